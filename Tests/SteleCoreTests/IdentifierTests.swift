import SteleCrypto
import Testing
@testable import SteleCore

@Suite("Digests and public keys as keys")
struct IdentifierTests {
    /// 32 bytes equal to `base` except at `index`.
    func bytes(flipping index: Int?) -> [UInt8] {
        var bytes = (0..<32).map { UInt8($0 &* 7 &+ 1) }
        if let index { bytes[index] ^= 0x80 }
        return bytes
    }

    @Test("digests are equal exactly when every byte is, even when they share their first eight bytes")
    func digestEquality() throws {
        let base = try #require(Digest(bytes: bytes(flipping: nil)))
        #expect(base == Digest(bytes: bytes(flipping: nil)))
        for index in [0, 7, 8, 31] {
            let other = try #require(Digest(bytes: bytes(flipping: index)))
            #expect(base != other, "differs at byte \(index)")
        }
        let set: Set<Digest> = Set([8, 20, 31, nil].map { Digest(bytes: bytes(flipping: $0))! })
        #expect(set.count == 4)
        #expect(set.contains(base))
        #expect(base.hashValue == Digest(bytes: bytes(flipping: nil))!.hashValue)
    }

    @Test("public keys are equal exactly when every byte is, even when they share their first eight bytes")
    func publicKeyEquality() throws {
        let base = try #require(PublicKey(bytes: bytes(flipping: nil)))
        #expect(base == PublicKey(bytes: bytes(flipping: nil)))
        for index in [0, 7, 8, 31] {
            let other = try #require(PublicKey(bytes: bytes(flipping: index)))
            #expect(base != other, "differs at byte \(index)")
        }
        var map: [PublicKey: Int] = [:]
        for (value, index) in [8, 20, 31].enumerated() { map[PublicKey(bytes: bytes(flipping: index))!] = value }
        map[base] = 9
        #expect(map.count == 4)
        #expect(map[PublicKey(bytes: bytes(flipping: 31))!] == 2)
        #expect(map[base] == 9)
    }
}
