import SteleCrypto

/// A ledger verifier written only from docs/ledger-format.md: its own byte parsing, SHA-256 and
/// Ed25519, nothing from SteleCore or SteleLedger. If it accepts what the store writes and
/// rejects what the doc's rules forbid, the doc is exact. Rule numbers are the doc's.
struct IndependentVerifier {
    struct Rejection: Error, CustomStringConvertible {
        let rule: Int
        let offset: Int
        let reason: String
        var description: String { "rule \(rule) at byte \(offset): \(reason)" }
    }

    struct Summary {
        let height: UInt64
        let headHash: [UInt8]
        let requestCount: Int
        let checkpointCount: Int
    }

    /// The genesis hash of the cluster, learned out of band (from the cluster config).
    let expectedGenesisHash: [UInt8]

    func verify(_ file: [UInt8]) throws(Rejection) -> Summary {
        try checkHeader(file)
        var state: State?
        var offset = 16
        while offset < file.count {
            let (type, body, next) = try frame(file, at: offset)
            if var current = state {
                try current.apply(type: type, body: body, at: offset)
                state = current
            } else {
                guard type == 1 else { throw Rejection(rule: 4, offset: offset, reason: "the first record has type \(type), not 1 (genesis)") }
                state = try State(genesisBody: body, at: offset, expectedHash: expectedGenesisHash)
            }
            offset = next
        }
        guard let state else { throw Rejection(rule: 4, offset: 16, reason: "no genesis record") }
        return Summary(height: state.height, headHash: state.blockHashes.last!, requestCount: state.executed.count, checkpointCount: state.checkpointCount)
    }

    private func checkHeader(_ file: [UInt8]) throws(Rejection) {
        guard file.count >= 16 else { throw Rejection(rule: 1, offset: 0, reason: "shorter than the header") }
        guard Array(file[0..<8]) == Array("STELELDG".utf8) else { throw Rejection(rule: 1, offset: 0, reason: "magic") }
        guard file[8] == 0, file[9] == 1 else { throw Rejection(rule: 1, offset: 8, reason: "version") }
        guard file[10..<16].allSatisfy({ $0 == 0 }) else { throw Rejection(rule: 1, offset: 10, reason: "reserved bytes") }
    }

    /// (type, body, offset of the next record)
    private func frame(_ file: [UInt8], at offset: Int) throws(Rejection) -> (UInt8, [UInt8], Int) {
        guard file.count - offset >= 4 else { throw Rejection(rule: 2, offset: offset, reason: "partial length field") }
        let length = Int(bigEndian(file[offset..<offset + 4]))
        guard length >= 1, length <= 16_777_216 else { throw Rejection(rule: 2, offset: offset, reason: "length \(length)") }
        guard offset + 4 + length + 8 <= file.count else { throw Rejection(rule: 2, offset: offset, reason: "record runs past the end") }
        let typeAndBody = Array(file[offset + 4..<offset + 4 + length])
        let checksum = Array(file[offset + 4 + length..<offset + 12 + length])
        guard Array(SHA256.hash(typeAndBody).prefix(8)) == checksum else { throw Rejection(rule: 2, offset: offset, reason: "checksum") }
        return (typeAndBody[0], Array(typeAndBody.dropFirst()), offset + 12 + length)
    }
}

private func bigEndian(_ bytes: ArraySlice<UInt8>) -> UInt64 {
    bytes.reduce(0) { $0 << 8 | UInt64($1) }
}

private func bigEndianBytes(_ value: UInt64, width: Int) -> [UInt8] {
    (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64(width - 1 - $0))) }
}

/// The 79 bytes every signature covers.
private func signedContent(cluster: [UInt8], tag: UInt8, view: UInt64, sequence: UInt64, signer: UInt16, digest: [UInt8]) -> [UInt8] {
    Array("stele.sig.v1".utf8) + cluster + [tag] + bigEndianBytes(view, width: 8) + bigEndianBytes(sequence, width: 8)
        + bigEndianBytes(UInt64(signer), width: 2) + digest
}

private func ed25519(_ signature: [UInt8], _ message: [UInt8], _ key: [UInt8]) -> Bool {
    guard let signature = Signature(bytes: signature), let key = PublicKey(bytes: key) else { return false }
    return Ed25519.verify(signature, of: message, by: key)
}

/// Reads a record body; running short or past a limit breaks rule 3.
private struct BodyReader {
    let body: [UInt8]
    let recordOffset: Int
    var position = 0

    mutating func take(_ count: Int) throws(IndependentVerifier.Rejection) -> [UInt8] {
        guard count <= body.count - position else { throw IndependentVerifier.Rejection(rule: 3, offset: recordOffset, reason: "body too short") }
        defer { position += count }
        return Array(body[position..<position + count])
    }

    mutating func integer(_ width: Int) throws(IndependentVerifier.Rejection) -> UInt64 {
        bigEndian(try take(width)[...])
    }

    mutating func count(limit: Int) throws(IndependentVerifier.Rejection) -> Int {
        let value = try integer(4)
        guard value <= UInt64(limit) else { throw IndependentVerifier.Rejection(rule: 3, offset: recordOffset, reason: "count \(value) above \(limit)") }
        return Int(value)
    }

    func expectEnd() throws(IndependentVerifier.Rejection) {
        guard position == body.count else { throw IndependentVerifier.Rejection(rule: 3, offset: recordOffset, reason: "trailing bytes") }
    }
}

private struct State {
    typealias Rejection = IndependentVerifier.Rejection

    let cluster: [UInt8]
    let f: Int
    let keys: [[UInt8]]
    /// Index h holds the hash of block h; index 0 the genesis hash.
    var blockHashes: [[UInt8]]
    var executed = Set<[UInt8]>()
    var latestCheckpoint: UInt64 = 0
    var checkpointCount = 0
    var height: UInt64 { UInt64(blockHashes.count - 1) }
    var quorum: Int { 2 * f + 1 }

    init(genesisBody body: [UInt8], at offset: Int, expectedHash: [UInt8]) throws(Rejection) {
        var reader = BodyReader(body: body, recordOffset: offset)
        guard try reader.integer(2) == 1 else { throw Rejection(rule: 4, offset: offset, reason: "genesis format version") }
        cluster = try reader.take(16)
        let n = Int(try reader.integer(2))
        guard n <= 256 else { throw Rejection(rule: 3, offset: offset, reason: "n above 256") }
        f = Int(try reader.integer(2))
        var keys = [[UInt8]]()
        for index in 0..<n {
            guard try reader.integer(2) == UInt64(index) else { throw Rejection(rule: 4, offset: offset, reason: "member ids not 0 ..< n") }
            keys.append(try reader.take(32))
        }
        try reader.expectEnd()
        guard n >= 1, n >= 3 * f + 1 else { throw Rejection(rule: 4, offset: offset, reason: "n < 3f+1") }
        guard Set(keys).count == n else { throw Rejection(rule: 4, offset: offset, reason: "repeated public key") }
        self.keys = keys
        let hash = SHA256.hash(Array("stele.genesis.v1".utf8) + body)
        guard hash == expectedHash else { throw Rejection(rule: 4, offset: offset, reason: "genesis hash is not the expected one") }
        blockHashes = [hash]
    }

    mutating func apply(type: UInt8, body: [UInt8], at offset: Int) throws(Rejection) {
        switch type {
        case 1: throw Rejection(rule: 4, offset: offset, reason: "a second genesis record")
        case 2: try applyBlock(body, at: offset)
        case 3: try applyCheckpoint(body, at: offset)
        default: throw Rejection(rule: 3, offset: offset, reason: "record type \(type)")
        }
    }

    private mutating func applyBlock(_ body: [UInt8], at offset: Int) throws(Rejection) {
        var reader = BodyReader(body: body, recordOffset: offset)
        let blockHeight = try reader.integer(8)
        let prevHash = try reader.take(32)
        let batchStart = reader.position
        let requestCount = try reader.count(limit: 4096)
        var requests = [(client: [UInt8], timestamp: UInt64, content: [UInt8], signature: [UInt8])]()
        for _ in 0..<requestCount {
            let start = reader.position
            let client = try reader.take(32)
            let timestamp = try reader.integer(8)
            let payloadLength = Int(try reader.integer(4))
            guard payloadLength <= 65_536 else { throw Rejection(rule: 3, offset: offset, reason: "payload above 64 KiB") }
            _ = try reader.take(payloadLength)
            let content = Array(body[start..<reader.position])
            requests.append((client, timestamp, content, try reader.take(64)))
        }
        let batchDigest = SHA256.hash(Array("stele.batch.v1".utf8) + body[batchStart..<reader.position])
        let view = try reader.integer(8)
        let signatureCount = try reader.count(limit: 256)
        var signatures = [(signer: Int, signature: [UInt8])]()
        for _ in 0..<signatureCount {
            signatures.append((Int(try reader.integer(2)), try reader.take(64)))
        }
        try reader.expectEnd()

        guard blockHeight == height + 1 else { throw Rejection(rule: 5, offset: offset, reason: "height \(blockHeight) after \(height)") }
        guard prevHash == blockHashes.last! else { throw Rejection(rule: 6, offset: offset, reason: "prevHash") }
        for request in requests {
            let contentDigest = SHA256.hash(Array("stele.request.v1".utf8) + request.content)
            let message = signedContent(cluster: cluster, tag: 1, view: 0, sequence: request.timestamp, signer: 0xFFFF, digest: contentDigest)
            guard ed25519(request.signature, message, request.client) else { throw Rejection(rule: 7, offset: offset, reason: "client signature") }
            guard executed.insert(request.client + bigEndianBytes(request.timestamp, width: 8)).inserted else {
                throw Rejection(rule: 8, offset: offset, reason: "(client, timestamp \(request.timestamp)) occurs twice")
            }
        }
        try checkQuorum(signatures, tag: 4, view: view, sequence: blockHeight, digest: batchDigest, rule: 9, offset: offset)
        let blockHash = SHA256.hash(Array("stele.block.v1".utf8) + bigEndianBytes(blockHeight, width: 8) + prevHash + batchDigest)
        blockHashes.append(blockHash)
    }

    private mutating func applyCheckpoint(_ body: [UInt8], at offset: Int) throws(Rejection) {
        var reader = BodyReader(body: body, recordOffset: offset)
        let sequence = try reader.integer(8)
        let stateDigest = try reader.take(32)
        let signatureCount = try reader.count(limit: 256)
        var signatures = [(signer: Int, signature: [UInt8])]()
        for _ in 0..<signatureCount {
            signatures.append((Int(try reader.integer(2)), try reader.take(64)))
        }
        try reader.expectEnd()
        guard sequence <= height else { throw Rejection(rule: 10, offset: offset, reason: "checkpoint above the last block") }
        guard sequence >= latestCheckpoint else { throw Rejection(rule: 10, offset: offset, reason: "checkpoint below an earlier one") }
        guard stateDigest == blockHashes[Int(sequence)] else { throw Rejection(rule: 10, offset: offset, reason: "state digest is not the block hash") }
        try checkQuorum(signatures, tag: 6, view: 0, sequence: sequence, digest: stateDigest, rule: 10, offset: offset)
        latestCheckpoint = sequence
        checkpointCount += 1
    }

    private func checkQuorum(_ signatures: [(signer: Int, signature: [UInt8])], tag: UInt8, view: UInt64, sequence: UInt64, digest: [UInt8], rule: Int, offset: Int) throws(Rejection) {
        guard signatures.count >= quorum else { throw Rejection(rule: rule, offset: offset, reason: "\(signatures.count) signatures, fewer than 2f+1") }
        var seen = Set<Int>()
        for entry in signatures {
            guard entry.signer < keys.count else { throw Rejection(rule: rule, offset: offset, reason: "signer \(entry.signer) is not a member") }
            guard seen.insert(entry.signer).inserted else { throw Rejection(rule: rule, offset: offset, reason: "signer \(entry.signer) repeated") }
            let message = signedContent(cluster: cluster, tag: tag, view: view, sequence: sequence, signer: UInt16(entry.signer), digest: digest)
            guard ed25519(entry.signature, message, keys[entry.signer]) else { throw Rejection(rule: rule, offset: offset, reason: "signature of replica \(entry.signer)") }
        }
    }
}
