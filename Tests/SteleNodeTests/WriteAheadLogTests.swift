import Foundation
import Testing
import PBFT
import SteleCore
import SteleCrypto
import SteleTestSupport
@testable import SteleNode

private let cluster = ClusterID(bytes: [UInt8](repeating: 3, count: 16))!
private let signer = ReplicaSigner(replica: 1, cluster: cluster, keyPair: FixedKeys.replica(1))
private let primarySigner = ReplicaSigner(replica: 0, cluster: cluster, keyPair: FixedKeys.replica(0))

private func records() -> [PersistRecord] {
    let prePrepare = PrePrepare(view: 0, sequence: 5, primary: 0, batch: []).signed(by: primarySigner)
    let prepare = Vote(kind: .prepare, view: 0, sequence: 5, digest: prePrepare.digest, replica: 1).signed(by: signer)
    return [
        .view(0, inViewChange: false),
        .prePrepare(prePrepare),
        .vote(prepare),
        .prepared(PreparedCertificate(prePrepare: prePrepare, prepares: [prepare])),
        .vote(Vote(kind: .commit, view: 0, sequence: 5, digest: prePrepare.digest, replica: 1).signed(by: signer)),
        .viewChange(ViewChange(newView: 1, stableSequence: 0, checkpointProof: [], prepared: [], replica: 1).signed(by: signer)),
        .view(1, inViewChange: true),
    ]
}


@Suite("Write-ahead log")
struct WriteAheadLogTests {
    /// Removed when the test ends (a suite instance per test).
    let scratchDirectory = TemporaryDirectory(prefix: "stele-wal")
    func scratch(_ name: String) -> String { scratchDirectory.file(name) }

    @Test("records survive a reopen after sync")
    func reopen() throws {
        let path = scratch("replica.wal")
        do {
            let wal = try WriteAheadLog(path: path)
            wal.append(records())
            try wal.sync()
        }
        let reopened = try WriteAheadLog(path: path)
        #expect(reopened.records == records())
        #expect(reopened.tornBytesDropped == 0)
    }

    /// A batch of three 2 KiB requests, its PRE-PREPARE and its prepared certificate.
    static func certifiedBatch(sequence: SequenceNumber = 6) -> (PrePrepare, PreparedCertificate) {
        let client = ClientSigner(cluster: cluster, keyPair: FixedKeys.repeating(9))
        let batch = (1...3).map { client.request(timestamp: UInt64($0) + sequence.value * 10, payload: [UInt8](repeating: 0x63, count: 2_048)) }
        let prePrepare = PrePrepare(view: 0, sequence: sequence, primary: 0, batch: batch).signed(by: primarySigner)
        let prepare = Vote(kind: .prepare, view: 0, sequence: sequence, digest: prePrepare.digest, replica: 1).signed(by: signer)
        return (prePrepare, PreparedCertificate(prePrepare: prePrepare, prepares: [prepare]))
    }

    @Test("a prepared certificate is logged without the batch its PRE-PREPARE record holds, and reopens whole")
    func preparedSharesItsBatch() throws {
        let path = scratch("replica.wal")
        let (prePrepare, certificate) = Self.certifiedBatch()
        let (later, laterCertificate) = Self.certifiedBatch(sequence: 7)
        let logged: [PersistRecord] = [.prePrepare(prePrepare), .prepared(certificate), .prePrepare(later), .prepared(laterCertificate)]
        do {
            let wal = try WriteAheadLog(path: path)
            wal.append(logged)
            try wal.sync()
        }
        let batchBytes = prePrepare.batch.reduce(0) { $0 + $1.encodedByteCount }
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0
        #expect(size > 2 * batchBytes, "both batches are in the log")
        #expect(size < 2 * batchBytes + 2_000, "once each")
        let reopened = try WriteAheadLog(path: path)
        #expect(reopened.records == logged)
        // Compaction keeps what is above the checkpoint, still sharing, still whole on reopen.
        try reopened.compact(above: 6)
        #expect(reopened.records == Array(logged.suffix(2)))
        let compacted = try WriteAheadLog(path: path)
        #expect(compacted.records == Array(logged.suffix(2)))
        let compactedSize = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0
        #expect(compactedSize < batchBytes + 1_000)
    }

    @Test("a shared-batch certificate whose batch is not in the log is a corrupt record")
    func preparedWithoutItsBatch() throws {
        let path = scratch("replica.wal")
        let (prePrepare, certificate) = Self.certifiedBatch()
        // Only the certificate, encoded as if the PRE-PREPARE record came before it.
        var shared: Set<Digest> = [prePrepare.digest]
        let frame = WriteAheadLog.frame(.prepared(certificate), loggedBatches: &shared)
        try Data(WriteAheadLog.magic + frame).write(to: URL(fileURLWithPath: path))
        #expect { _ = try WriteAheadLog(path: path) } throws: { error in
            guard let error = error as? WALError, case .corruptRecord(let reason) = error.code else { return false }
            return reason.contains("no earlier PRE-PREPARE") && error.offset == WriteAheadLog.magic.count
        }
    }

    @Test("a torn last record is truncated at every cut point; earlier records survive")
    func tornTail() throws {
        let path = scratch("replica.wal")
        do {
            let wal = try WriteAheadLog(path: path)
            wal.append(Array(records().prefix(3)))
            try wal.sync()
        }
        let complete = try Data(contentsOf: URL(fileURLWithPath: path))
        var noBatches: Set<Digest> = []
        let lastFrame = WriteAheadLog.frame(records()[2], loggedBatches: &noBatches)
        for cut in 1..<lastFrame.count {
            let torn = complete.prefix(complete.count - cut)
            try torn.write(to: URL(fileURLWithPath: path))
            let wal = try WriteAheadLog(path: path)
            #expect(wal.records == Array(records().prefix(2)), "cut \(cut)")
            #expect(wal.tornBytesDropped == lastFrame.count - cut)
        }
    }

    @Test("corruption before the tail refuses to open, naming the offset")
    func middleCorruption() throws {
        let path = scratch("replica.wal")
        do {
            let wal = try WriteAheadLog(path: path)
            wal.append(records())
            try wal.sync()
        }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let firstRecordStart = WriteAheadLog.magic.count
        bytes[firstRecordStart + 6] ^= 0xff
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect { _ = try WriteAheadLog(path: path) } throws: { error in
            guard let error = error as? WALError, case .corruptRecord = error.code else { return false }
            return error.offset == firstRecordStart
        }
    }

    @Test("compaction keeps the view, the view change, the checkpoint and records above it")
    func compaction() throws {
        let path = scratch("replica.wal")
        let wal = try WriteAheadLog(path: path)
        wal.append(records())
        let certificate = CheckpointCertificate(sequence: 8, stateDigest: Digest.of([1]), signatures: [])
        let later = Vote(kind: .prepare, view: 1, sequence: 9, digest: Digest.of([2]), replica: 1).signed(by: signer)
        wal.append([.stableCheckpoint(certificate), .vote(later)])
        try wal.compact(above: 8)
        let expected: [PersistRecord] = [.stableCheckpoint(certificate), records()[5], .view(1, inViewChange: true), .vote(later)]
        #expect(wal.records == expected)
        let reopened = try WriteAheadLog(path: path)
        #expect(reopened.records == expected)
    }

    /// A NEW-VIEW as a new primary persists it before broadcasting: one VIEW-CHANGE with a
    /// prepared certificate, O re-proposing its batch.
    static func newViewRecord() -> PersistRecord {
        let (prePrepare, certificate) = Self.certifiedBatch()
        let viewChange = ViewChange(newView: 1, stableSequence: 0, checkpointProof: [], prepared: [certificate], replica: 1).signed(by: signer)
        let o = PrePrepare(view: 1, sequence: prePrepare.sequence, primary: 1, batch: prePrepare.batch).signed(by: signer)
        return .newView(NewView(view: 1, viewChanges: [viewChange], prePrepares: [o], primary: 1).signed(by: signer))
    }

    @Test("a NEW-VIEW record survives a reopen and a compaction")
    func newViewRoundTrip() throws {
        let path = scratch("replica.wal")
        let record = Self.newViewRecord()
        #expect(try PersistCodec.decode(PersistCodec.encode(record)) == record)
        do {
            let wal = try WriteAheadLog(path: path)
            wal.append(records() + [record])
            try wal.sync()
        }
        let reopened = try WriteAheadLog(path: path)
        #expect(reopened.records == records() + [record])
        try reopened.compact(above: 8)
        #expect(reopened.records.contains(record), "compaction keeps the latest NEW-VIEW")
        #expect(try WriteAheadLog(path: path).records == reopened.records)
    }

    @Test("a corrupt NEW-VIEW record is a typed error")
    func corruptNewView() throws {
        let body = PersistCodec.encode(Self.newViewRecord())
        for cut in [1, 9, body.count / 2, body.count - 1] {
            #expect(throws: DecodingError.self, "cut at \(cut)") { _ = try PersistCodec.decode(Array(body.prefix(cut))) }
        }
        // Inside a log, a well-framed record whose body does not decode refuses to open.
        let path = scratch("replica.wal")
        var truncated = Array(body.prefix(body.count - 10))
        truncated[0] = PersistCodec.Tag.newView.rawValue
        var writer = ByteWriter()
        writer.write(UInt32(truncated.count))
        writer.writeFixed(truncated)
        writer.writeFixed(Array(SHA256.hash(truncated).prefix(8)))
        var noBatches: Set<Digest> = []
        let first = WriteAheadLog.frame(records()[0], loggedBatches: &noBatches)
        try Data(WriteAheadLog.magic + first + writer.bytes + first).write(to: URL(fileURLWithPath: path))
        #expect { _ = try WriteAheadLog(path: path) } throws: { error in
            guard let error = error as? WALError, case .corruptRecord = error.code else { return false }
            return error.offset == WriteAheadLog.magic.count + first.count
        }
    }
}
