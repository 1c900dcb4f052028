import SteleCrypto
import Testing
@testable import SteleCore

@Suite("Digests and public keys as keys")
struct IdentifierTests {
    /// 32 fixed bytes, with the byte at `index` flipped.
    static func bytes(flipping index: Int?) -> [UInt8] {
        var bytes = (0..<32).map { UInt8($0 &* 7 &+ 1) }
        if let index { bytes[index] ^= 0x80 }
        return bytes
    }

    /// Values made from the same bytes are equal and hash alike; values differing in any one
    /// byte (within the hashed first eight or after them) are unequal and stay apart in a
    /// dictionary.
    func checkByteIdentity<Value: Hashable>(_ make: ([UInt8]) -> Value?) throws {
        let base = try #require(make(Self.bytes(flipping: nil)))
        #expect(base == make(Self.bytes(flipping: nil)))
        #expect(base.hashValue == make(Self.bytes(flipping: nil))!.hashValue)
        for index in [0, 7, 8, 31] {
            let other = try #require(make(Self.bytes(flipping: index)))
            #expect(base != other, "differs at byte \(index)")
        }
        var map: [Value: Int] = [:]
        for (value, index) in [8, 20, 31].enumerated() { map[make(Self.bytes(flipping: index))!] = value }
        map[base] = 9
        #expect(map.count == 4)
        #expect(map[make(Self.bytes(flipping: 31))!] == 2)
        #expect(map[base] == 9)
    }

    @Test("digests are equal exactly when every byte is, even when they share their first eight bytes")
    func digestEquality() throws {
        try checkByteIdentity(Digest.init(bytes:))
    }

    @Test("public keys are equal exactly when every byte is, even when they share their first eight bytes")
    func publicKeyEquality() throws {
        try checkByteIdentity(PublicKey.init(bytes:))
    }
}
