import ArgumentParser
import Foundation
import SteleCore
import SteleCrypto
import SteleNode

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit transactions; print the height, block hash and latency of each.",
        discussion: """
        Each PAYLOAD is one transaction (UTF-8). With --stdin, every line of standard input is one
        transaction, submitted pipelined (--window at a time). A transaction is acknowledged once
        f+1 replicas report the same block. Exits 1 if any transaction got no quorum in time.
        """)

    @OptionGroup var options: DirectoryOption

    @Flag(help: "Read one transaction per line from standard input.")
    var stdin = false

    @Flag(help: "Print one JSON object per transaction.")
    var json = false

    @Option(help: "Seconds to wait for a quorum per transaction.")
    var timeout: Int = 30

    @Option(help: "Transactions in flight at once with --stdin.")
    var window: Int = 64

    @Argument(help: "Transaction payloads.")
    var payloads: [String] = []

    func validate() throws {
        if stdin && !payloads.isEmpty { throw ValidationError("give payloads as arguments or --stdin, not both") }
        if !stdin && payloads.isEmpty { throw ValidationError("give at least one PAYLOAD, or --stdin") }
        if window < 1 { throw ValidationError("--window must be at least 1") }
    }

    func run() async throws {
        let (config, clientKey) = options.loadClient()
        var lines = payloads
        if stdin {
            while let line = readLine(strippingNewline: true) {
                if !line.isEmpty { lines.append(line) }
            }
        }
        let transactions = lines
        let json = self.json
        let timeout = Duration.seconds(timeout)
        let window = self.window
        let failures = try await SteleClient.with(config: config, keyPair: clientKey, logger: makeLogger("stele.client", level: .critical)) { client in
            await withTaskGroup(of: (Int, Result<SubmitResult, Error>).self) { group in
                var next = 0
                var failures = 0
                func report(_ index: Int, _ outcome: Result<SubmitResult, Error>) {
                    switch outcome {
                    case .success(let result):
                        if json {
                            let encoder = JSONEncoder()
                            encoder.outputFormatting = .sortedKeys
                            print(String(decoding: (try? encoder.encode(result)) ?? Data(), as: UTF8.self))
                        } else {
                            let latency = Double(result.latencyMicroseconds) / 1000
                            print(String(format: "committed  height %llu  block %@…  %.1f ms  %@", result.height,
                                         String(result.blockHash.prefix(16)) as NSString, latency, String(transactions[index].prefix(40)) as NSString))
                        }
                    case .failure(let error):
                        failures += 1
                        FileHandle.standardError.write(Data("stele: transaction \(index + 1) (\(transactions[index].prefix(40))): \(error)\n".utf8))
                    }
                }
                while next < transactions.count && next < window {
                    let index = next
                    group.addTask { (index, await Result(catching: { try await client.submit(Array(transactions[index].utf8), timeout: timeout) })) }
                    next += 1
                }
                while let (index, outcome) = await group.next() {
                    report(index, outcome)
                    if next < transactions.count {
                        let index = next
                        group.addTask { (index, await Result(catching: { try await client.submit(Array(transactions[index].utf8), timeout: timeout) })) }
                        next += 1
                    }
                }
                return failures
            }
        }
        if failures > 0 { fail("\(failures) of \(transactions.count) transaction(s) were not acknowledged", code: 1) }
    }
}

extension Result where Failure == Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
