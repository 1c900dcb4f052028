import Foundation
import SteleCore
import SteleTestSupport
import SteleLedger
import Testing
@testable import SteleAudit


/// Results written by concurrent workers, one slot each.
final class ReportSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [AuditReport?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ report: AuditReport?) { lock.withLock { slots[index] = report } }
    var all: [AuditReport?] { lock.withLock { slots } }
}

/// Every mutant shares most signatures with the original: verify each distinct one once.
let mutantSignatureCache = SignatureCache()

/// Audits many mutated copies of one ledger, spread over the cores (each audit single-threaded).
/// A nil report means the audit threw, which for in-memory bytes must never happen.
func auditMutants(_ mutants: [[UInt8]], config: ClusterConfig) -> [AuditReport?] {
    var options = AuditOptions()
    options.workerCount = 1
    options.signatureCache = mutantSignatureCache
    let auditor = Auditor(config: config, options: options)
    let slots = ReportSlots(count: mutants.count)
    DispatchQueue.concurrentPerform(iterations: mutants.count) { index in
        slots.set(index, try? auditor.audit(sources: [.memory(name: "mutant-\(index).ledger", bytes: mutants[index])]))
    }
    return slots.all
}

@Suite("Byte flips: any single changed byte is a violation, never a pass, never a crash")
struct ByteFlipTests {
    static let original = LedgerBuilder.fileBytes(FixtureSet.validRecords(replica: 0))

    @Test("the unmodified ledger passes (the baseline the flips are measured against)")
    func baselinePasses() throws {
        let report = try Auditor(config: TestKeys.config).audit(sources: [.memory(name: "original.ledger", bytes: Self.original)])
        #expect(report.verdict == .pass)
    }

    @Test("2000 seeded single-byte flips anywhere in the file are each found")
    func seededFlipsAreFound() async {
        await offCooperativePool {
            var generator = SeededGenerator(seed: 0x5e1e_2026)
            var mutants = [[UInt8]]()
            var positions = [Int]()
            for _ in 0..<2000 {
                let position = Int.random(in: 0..<Self.original.count, using: &generator)
                var bytes = Self.original
                bytes[position] ^= UInt8.random(in: 1...255, using: &generator)
                mutants.append(bytes)
                positions.append(position)
            }
            let reports = auditMutants(mutants, config: TestKeys.config)
            for (index, report) in reports.enumerated() {
                #expect(report?.verdict == .violation, "flip at byte \(positions[index]) was not found")
            }
        }
    }

    @Test("every byte of the header and the genesis record, flipped, is found")
    func everyHeaderAndGenesisByte() async {
        await offCooperativePool {
            let genesisRecordByteCount = LedgerRecord.genesis(TestKeys.config.genesis).framed().count
            let prefix = LedgerFormat.headerByteCount + genesisRecordByteCount
            let mutants = (0..<prefix).map { position -> [UInt8] in
                var bytes = Self.original
                bytes[position] ^= 0x01
                return bytes
            }
            let reports = auditMutants(mutants, config: TestKeys.config)
            for (position, report) in reports.enumerated() {
                #expect(report?.verdict == .violation, "flip at byte \(position) was not found")
            }
        }
    }

    /// A forger recomputes the checksum: the hashes and signatures must still catch the change.
    @Test("1000 seeded flips inside record bodies, re-checksummed, are each found")
    func reframedFlipsAreFound() async {
        await offCooperativePool {
            let originalFramed = FixtureSet.validRecords(replica: 0).map { $0.framed() }
            var generator = SeededGenerator(seed: 0xf0_4c3d)
            var mutants = [[UInt8]]()
            var descriptions = [String]()
            for _ in 0..<1000 {
                let recordIndex = Int.random(in: 0..<originalFramed.count, using: &generator)
                var framed = originalFramed
                var typeAndBody = Array(framed[recordIndex].dropFirst(4).dropLast(LedgerFormat.checksumByteCount))
                let position = Int.random(in: 0..<typeAndBody.count, using: &generator)
                typeAndBody[position] ^= UInt8.random(in: 1...255, using: &generator)
                framed[recordIndex] = Array(framed[recordIndex].prefix(4)) + typeAndBody + LedgerFormat.checksum(typeAndBody)
                mutants.append(framed.reduce(LedgerFormat.header(), +))
                descriptions.append("record \(recordIndex), body byte \(position)")
            }
            let reports = auditMutants(mutants, config: TestKeys.config)
            for (index, report) in reports.enumerated() {
                #expect(report?.verdict == .violation, "re-checksummed flip at \(descriptions[index]) was not found")
            }
        }
    }

    @Test("a truncated file is a violation unless the cut falls exactly between two records")
    func truncationsAreFound() async {
        await offCooperativePool {
            var generator = SeededGenerator(seed: 7)
            let recordBoundaries = Self.recordBoundaries
            let lengths = (0..<300).map { _ in Int.random(in: 0..<Self.original.count, using: &generator) } + recordBoundaries.sorted()
            let reports = auditMutants(lengths.map { Array(Self.original.prefix($0)) }, config: TestKeys.config)
            for (index, report) in reports.enumerated() {
                let length = lengths[index]
                // A cut exactly between records leaves a shorter valid ledger, which is legitimately
                // a pass: the file is complete up to a lower height.
                let cutBetweenRecords = recordBoundaries.contains(length)
                #expect(report?.verdict == (cutBetweenRecords ? .pass : .violation), "truncation to \(length) bytes")
            }
        }
    }

    static var recordBoundaries: Set<Int> {
        var boundaries = Set<Int>()
        var offset = LedgerFormat.headerByteCount
        for record in FixtureSet.validRecords(replica: 0) {
            offset += record.framed().count
            boundaries.insert(offset)
        }
        return boundaries
    }
}
