import Foundation
import Testing
import PBFT
import SteleCore
import SteleCrypto
import SteleHarness
@testable import SteleNode

private let cluster = ClusterID(bytes: [UInt8](repeating: 3, count: 16))!
private let signer = ReplicaSigner(replica: 1, cluster: cluster, keyPair: KeyPair(seed: [UInt8](repeating: 2, count: 32))!)
private let primarySigner = ReplicaSigner(replica: 0, cluster: cluster, keyPair: KeyPair(seed: [UInt8](repeating: 1, count: 32))!)

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
    let scratchDirectories = ScratchDirectories(prefix: "stele-wal")
    func scratch(_ name: String) -> String { scratchDirectories.path(name) }

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

    @Test("a torn last record is truncated at every cut point; earlier records survive")
    func tornTail() throws {
        let path = scratch("replica.wal")
        do {
            let wal = try WriteAheadLog(path: path)
            wal.append(Array(records().prefix(3)))
            try wal.sync()
        }
        let complete = try Data(contentsOf: URL(fileURLWithPath: path))
        let lastFrame = WriteAheadLog.frame(records()[2])
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
}
