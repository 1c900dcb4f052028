import Foundation
import SteleCore
import SteleCrypto
@testable import SteleLedger

/// The worked example of docs/ledger-format.md, built by the real code: a 4-replica genesis
/// from fixed seeds and a fixed cluster id, and block 1 holding one client request, committed
/// in view 0 by replicas 0, 1 and 2. `text()` renders it; the doc holds that text verbatim
/// between the markers, and `WorkedExampleTests` fails if the two ever differ.
enum WorkedExample {
    static let beginMarker = "<!-- BEGIN GENERATED EXAMPLE: Tests/SteleLedgerTests/WorkedExample.swift -->"
    static let endMarker = "<!-- END GENERATED EXAMPLE -->"
    static let payload = "hello, stele"
    static let timestamp: UInt64 = 1

    static let cluster = TestCluster()
    static var genesis: Genesis { cluster.genesis }
    static var request: Request { cluster.request(timestamp: timestamp, payload: payload) }
    static var block: CertifiedBlock { cluster.block(height: 1, prevHash: genesis.hash, batch: [request], view: 0, signers: [0, 1, 2]) }

    /// The ledger file exactly as the store writes it.
    static func fileBytes() throws -> [UInt8] {
        let memory = MemoryStorage()
        let store = try LedgerStore.create(storage: memory, genesis: genesis)
        try store.appendDurably([.block(block)])
        return memory.bytes
    }

    /// The fenced text block that sits between the markers in the doc.
    static func text() throws -> String {
        let file = try fileBytes()
        var out = TextDump()
        out.line("```text")
        inputs(into: &out)
        var fields = FieldWalk(file: file)
        header(&fields, &out)
        genesisRecord(&fields, &out)
        blockRecord(&fields, &out)
        precondition(fields.position == file.count, "the walk covers the whole file")
        derived(into: &out)
        out.section("The whole file (\(file.count) bytes)")
        for start in stride(from: 0, to: file.count, by: 32) {
            out.line(pad(String(start), 6) + "  " + Hex.encode(file[start..<min(start + 32, file.count)]))
        }
        out.line("```")
        return out.text
    }

    private static func inputs(into out: inout TextDump) {
        out.section("Inputs")
        out.item("cluster id", cluster.cluster.hex)
        for (index, key) in cluster.replicaKeys.enumerated() {
            out.item("replica \(index) seed", Hex.encode(key.seed))
            out.item("replica \(index) public key", key.publicKey.hex)
        }
        out.item("client seed", Hex.encode(cluster.clientSeed))
        out.item("client public key", cluster.client.publicKey.hex)
        out.item("request", "timestamp \(timestamp), payload \"\(payload)\" (\(payload.utf8.count) bytes)")
        out.item("block 1", "certificate view 0, COMMIT signatures of replicas 0, 1, 2")
    }

    private static func header(_ fields: inout FieldWalk, _ out: inout TextDump) {
        out.section("File header: offset 0, \(LedgerFormat.headerByteCount) bytes")
        fields.take(8, "magic \"STELELDG\"", into: &out)
        fields.take(2, "version = 1", into: &out)
        fields.take(6, "reserved", into: &out)
    }

    private static func genesisRecord(_ fields: inout FieldWalk, _ out: inout TextDump) {
        let framed = LedgerRecord.genesis(genesis).framed()
        out.section("Genesis record: offset \(fields.position), \(framed.count) bytes")
        fields.take(4, "length = \(framed.count - LedgerFormat.recordOverheadByteCount)", into: &out)
        fields.take(1, "type = 1 (genesis)", into: &out)
        fields.take(2, "formatVersion = 1", into: &out)
        fields.take(16, "cluster id", into: &out)
        fields.take(2, "n = \(genesis.members.count)", into: &out)
        fields.take(2, "f = \(genesis.f)", into: &out)
        for member in genesis.members {
            fields.take(2, "member id = \(member.id.value)", into: &out)
            fields.take(32, "member \(member.id.value) public key", into: &out)
        }
        fields.take(8, "checksum", into: &out)
    }

    private static func blockRecord(_ fields: inout FieldWalk, _ out: inout TextDump) {
        let framed = LedgerRecord.block(block).framed()
        out.section("Block record (height 1): offset \(fields.position), \(framed.count) bytes")
        fields.take(4, "length = \(framed.count - LedgerFormat.recordOverheadByteCount)", into: &out)
        fields.take(1, "type = 2 (block)", into: &out)
        fields.take(8, "height = 1", into: &out)
        fields.take(32, "prevHash = genesis hash", into: &out)
        fields.take(4, "batch count = 1", into: &out)
        fields.take(32, "request[0] client public key", into: &out)
        fields.take(8, "request[0] timestamp = \(timestamp)", into: &out)
        fields.take(4, "request[0] payload length = \(payload.utf8.count)", into: &out)
        fields.take(payload.utf8.count, "request[0] payload \"\(payload)\"", into: &out)
        fields.take(64, "request[0] client signature", into: &out)
        fields.take(8, "certificate view = 0", into: &out)
        fields.take(4, "signature count = \(block.commitSignatures.count)", into: &out)
        for signature in block.commitSignatures {
            fields.take(2, "signer = replica \(signature.replica.value)", into: &out)
            fields.take(64, "COMMIT signature of replica \(signature.replica.value)", into: &out)
        }
        fields.take(8, "checksum", into: &out)
    }

    private static func derived(into out: inout TextDump) {
        out.section("Derived values")
        var genesisInput = Array("stele.genesis.v1".utf8)
        genesisInput += genesis.encoded()
        out.hash("genesis hash = SHA-256(\"stele.genesis.v1\" || genesis body)", input: genesisInput, result: genesis.hash)

        var requestInput = ByteWriter()
        requestInput.writeFixed(Array("stele.request.v1".utf8))
        requestInput.write(request.client)
        requestInput.write(request.timestamp)
        requestInput.writeLengthPrefixed(request.payload)
        out.hash("request content digest = SHA-256(\"stele.request.v1\" || client || timestamp || payload length || payload)",
                 input: requestInput.bytes, result: request.contentDigest)
        out.bytes("request signed content (79 bytes), signed by the client key", request.signedContent.bytes(cluster: cluster.cluster))

        var batchInput = ByteWriter()
        batchInput.writeFixed(Array("stele.batch.v1".utf8))
        batchInput.writeArray(block.batch) { $1.encode(into: &$0) }
        out.hash("batch digest = SHA-256(\"stele.batch.v1\" || count || requests)", input: batchInput.bytes, result: block.batchDigest)

        var blockInput = ByteWriter()
        blockInput.writeFixed(Array("stele.block.v1".utf8))
        blockInput.write(block.height)
        blockInput.write(block.prevHash)
        blockInput.write(block.batchDigest)
        out.hash("block hash = SHA-256(\"stele.block.v1\" || height || prevHash || batch digest)", input: blockInput.bytes, result: block.hash)

        let vote = block.commitVotes[0]
        out.bytes("COMMIT signed content of replica 0 (79 bytes)", vote.signedContent.bytes(cluster: cluster.cluster))
        out.bytes("its signature (Ed25519, replica 0's key)", vote.signature.bytes)
    }

    static func pad(_ text: String, _ width: Int) -> String {
        String(repeating: " ", count: max(0, width - text.count)) + text
    }
}

/// Lines of the rendered example.
struct TextDump {
    static let hexColumnCount = 64
    private(set) var lines: [String] = []

    var text: String { lines.joined(separator: "\n") + "\n" }

    mutating func line(_ text: String) { lines.append(text) }

    mutating func section(_ title: String) {
        if lines.count > 1 { lines.append("") }
        lines.append(title)
    }

    mutating func item(_ name: String, _ value: String) {
        lines.append("  " + name.padding(toLength: 24, withPad: " ", startingAt: 0) + value)
    }

    /// `hex` wrapped at 32 bytes a line, the first line prefixed by `lead`.
    mutating func wrapped(_ lead: String, _ hex: String, indent: Int) {
        var rest = Substring(hex)
        var first = true
        repeat {
            let chunk = rest.prefix(TextDump.hexColumnCount)
            rest = rest.dropFirst(chunk.count)
            lines.append((first ? lead : String(repeating: " ", count: indent)) + chunk)
            first = false
        } while !rest.isEmpty
    }

    mutating func bytes(_ title: String, _ value: [UInt8]) {
        lines.append("  " + title)
        wrapped("    ", Hex.encode(value), indent: 4)
    }

    mutating func hash(_ title: String, input: [UInt8], result: Digest) {
        lines.append("  " + title)
        wrapped("    input (\(input.count) bytes)  ", Hex.encode(input), indent: 4 + "input (\(input.count) bytes)  ".count)
        lines.append("    result" + String(repeating: " ", count: "input (\(input.count) bytes)  ".count - "result".count) + result.hex)
    }
}

/// Walks the file field by field, in the order and widths the doc gives.
struct FieldWalk {
    let file: [UInt8]
    private(set) var position = 0

    init(file: [UInt8]) { self.file = file }

    mutating func take(_ count: Int, _ name: String, into out: inout TextDump) {
        precondition(position + count <= file.count, "the walk runs past the file at \(name)")
        let hex = Hex.encode(file[position..<position + count])
        if hex.count <= TextDump.hexColumnCount, name.count <= 38 {
            out.line(WorkedExample.pad(String(position), 6) + "  " + name.padding(toLength: 40, withPad: " ", startingAt: 0) + hex)
        } else {
            out.line(WorkedExample.pad(String(position), 6) + "  " + name)
            out.wrapped("        ", hex, indent: 8)
        }
        position += count
    }
}
