import Foundation
import SteleCore
import SteleLedger

/// Why the simulator could not write its output directory.
public struct ExportError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: Equatable, Sendable {
        case cannotCreateDirectory
        case cannotWrite
    }
    public let code: Code
    public let path: String
    public let reason: String

    public var description: String { "\(path): \(code == .cannotCreateDirectory ? "cannot create directory" : "cannot write"): \(reason)" }
}

/// Writes a run's cluster.json and each exported replica's committed log as a ledger file.
public enum LedgerExport {
    /// The ledger file bytes: header, genesis record, one block record per block, and each
    /// stable checkpoint certificate right after the block at its sequence.
    public static func ledgerBytes(config: ClusterConfig, blocks: [CertifiedBlock], checkpoints: [CheckpointCertificate]) -> [UInt8] {
        var bytes = LedgerFormat.header()
        bytes += LedgerRecord.genesis(config.genesis).framed()
        var checkpointsBySequence = [SequenceNumber: CheckpointCertificate]()
        for certificate in checkpoints where certificate.sequence >= 1 {
            checkpointsBySequence[certificate.sequence] = certificate
        }
        for block in blocks {
            bytes += LedgerRecord.block(block).framed()
            if let certificate = checkpointsBySequence[block.height] {
                bytes += LedgerRecord.checkpoint(certificate).framed()
            }
        }
        return bytes
    }

    /// DIR/cluster.json and DIR/replica-I.ledger for every ledger in the report. Returns the paths written.
    @discardableResult
    public static func write(_ report: SimulationReport, to directory: String) throws(ExportError) -> [String] {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ExportError(code: .cannotCreateDirectory, path: directory, reason: "\(error)")
        }
        var written = [String]()
        let clusterPath = directory + "/cluster.json"
        try write(report.config.jsonData(), to: clusterPath)
        written.append(clusterPath)
        for replica in report.ledgers.keys.sorted() {
            let bytes = ledgerBytes(config: report.config, blocks: report.ledgers[replica] ?? [], checkpoints: report.checkpoints[replica] ?? [])
            let path = directory + "/replica-\(replica.value).ledger"
            try write(Data(bytes), to: path)
            written.append(path)
        }
        return written
    }

    static func write(_ data: Data, to path: String) throws(ExportError) {
        do {
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw ExportError(code: .cannotWrite, path: path, reason: "\(error)")
        }
    }
}
