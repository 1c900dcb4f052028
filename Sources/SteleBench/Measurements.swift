import Foundation
import Logging
import SteleCore
import SteleCrypto
import SteleLedger
import SteleNode

/// Measures this machine's Ed25519 rates on one core, for the ceiling: operations per second
/// of this thread's CPU time, so that other processes competing for the cores (a shared,
/// noisy machine) do not make the ceiling look lower than what a core can do.
public func measureEd25519(seconds: Double = 1.0) -> (verify: Double, sign: Double) {
    let keyPair = KeyPair(seed: [UInt8](repeating: 7, count: 32))!
    let message = [UInt8](repeating: 0x5a, count: 79)
    let signature = keyPair.sign(message)
    var signs = 0
    var start = threadCPUSeconds()
    while threadCPUSeconds() - start < seconds {
        for _ in 0..<100 { _ = keyPair.sign(message) }
        signs += 100
    }
    let signRate = Double(signs) / (threadCPUSeconds() - start)
    var verifies = 0
    start = threadCPUSeconds()
    while threadCPUSeconds() - start < seconds {
        for _ in 0..<100 { precondition(Ed25519.verify(signature, of: message, by: keyPair.publicKey)) }
        verifies += 100
    }
    return (Double(verifies) / (threadCPUSeconds() - start), signRate)
}

/// CPU seconds this whole process has used.
public func processCPUSeconds() -> Double { cpuSeconds(CLOCK_PROCESS_CPUTIME_ID) }

/// CPU seconds the calling thread has used.
public func threadCPUSeconds() -> Double { cpuSeconds(CLOCK_THREAD_CPUTIME_ID) }

private func cpuSeconds(_ clock: clockid_t) -> Double {
    var time = timespec()
    clock_gettime(clock, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// Sum of the replica processes' CPU seconds.
func replicaCPUSeconds(_ pids: [Int32]) -> Double {
    pids.compactMap(ProcessStats.cpuSeconds).reduce(0, +)
}

/// The status of every replica that answers.
func collectStatuses(config: ClusterConfig, directory: ClusterDirectory) async throws -> [ReplicaID: ReplicaStatus] {
    let key = try KeyFile.read(from: directory.clientKeyPath)
    let logger = Logger(label: "stele.bench") { _ in SwiftLogNoOpLogHandler() }
    return try await SteleClient.with(config: config, keyPair: key, logger: logger) { client in
        var result: [ReplicaID: ReplicaStatus] = [:]
        for id in config.replicaIDs { if let status = await client.status(of: id) { result[id] = status } }
        return result
    }
}

typealias LedgerFigures = (averageBatchSize: Double, bytesPerTransaction: Double)

/// Transactions per block and ledger bytes per transaction, from replica 0's ledger file.
func ledgerFigures(directory: ClusterDirectory, config: ClusterConfig) -> LedgerFigures {
    guard let store = try? LedgerStore.open(path: directory.ledgerPath(0), expectedGenesis: config.genesis,
                                            access: .readOnly) else { return (0, 0) }
    var blocks = 0
    var transactions = 0
    var cursor = store.entries()
    while let entry = try? cursor.next() {
        if case .block(let block) = entry.record {
            blocks += 1
            transactions += block.batch.count
        }
    }
    let bytesPerTransaction = transactions > 0 ? Double(store.byteCount) / Double(transactions) : 0
    return (Double(transactions) / Double(max(blocks, 1)), bytesPerTransaction)
}
