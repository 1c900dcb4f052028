import Foundation
import SteleTestSupport
import Testing
@testable import SteleCrypto

/// RFC 8032 §7.1 test vectors: (secret key = seed, public key, message, signature).
private let rfc8032Vectors: [(seed: String, publicKey: String, message: String, signature: String)] = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
     "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
     "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
     "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]

/// The order of the Ed25519 base point, L = 2^252 + 27742317777372353535851937790883648493,
/// little-endian.
private let groupOrderLittleEndian: [UInt8] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
]

/// Adds two 256-bit little-endian integers (no overflow expected for S + L).
private func addLittleEndian(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 32)
    var carry: UInt16 = 0
    for index in 0..<32 {
        let sum = UInt16(a[index]) + UInt16(b[index]) + carry
        out[index] = UInt8(sum & 0xff)
        carry = sum >> 8
    }
    precondition(carry == 0)
    return out
}

@Suite("Ed25519 (RFC 8032 via libsodium)")
struct Ed25519Tests {
    @Test("RFC 8032 §7.1 vectors: key derivation, signing and verification", arguments: 0..<3)
    func rfc8032Vector(index: Int) throws {
        let vector = rfc8032Vectors[index]
        let seed = try #require(Hex.decode(vector.seed))
        let keyPair = try #require(KeyPair(seed: seed))
        #expect(keyPair.publicKey.hex == vector.publicKey)
        let message = try #require(Hex.decode(vector.message))
        let signature = keyPair.sign(message)
        #expect(signature.hex == vector.signature)
        #expect(Ed25519.verify(signature, of: message, by: keyPair.publicKey))
    }

    @Test("a signature does not verify for another message")
    func rejectsOtherMessage() throws {
        let keyPair = try #require(KeyPair(seed: Hex.decode(rfc8032Vectors[1].seed)!))
        let signature = keyPair.sign([0x72])
        #expect(!Ed25519.verify(signature, of: [0x73], by: keyPair.publicKey))
        #expect(!Ed25519.verify(signature, of: [], by: keyPair.publicKey))
    }

    @Test("a signature does not verify under a wrong key")
    func rejectsWrongKey() throws {
        let signer = try #require(KeyPair(seed: Hex.decode(rfc8032Vectors[0].seed)!))
        let other = try #require(KeyPair(seed: Hex.decode(rfc8032Vectors[1].seed)!))
        let signature = signer.sign(Array("stele".utf8))
        #expect(Ed25519.verify(signature, of: Array("stele".utf8), by: signer.publicKey))
        #expect(!Ed25519.verify(signature, of: Array("stele".utf8), by: other.publicKey))
    }

    @Test("a non-canonical signature (S + L, same point arithmetic) is rejected")
    func rejectsNonCanonicalS() throws {
        let vector = rfc8032Vectors[0]
        let publicKey = try #require(PublicKey(hex: vector.publicKey))
        let valid = try #require(Hex.decode(vector.signature))
        let sPlusL = addLittleEndian(Array(valid[32..<64]), groupOrderLittleEndian)
        let malleated = try #require(Signature(bytes: Array(valid[0..<32]) + sPlusL))
        #expect(malleated != Signature(bytes: valid)!)
        #expect(!Ed25519.verify(malleated, of: [], by: publicKey))
        #expect(Ed25519.verify(Signature(bytes: valid)!, of: [], by: publicKey))
    }

    @Test("every single-bit flip of a signature is rejected")
    func rejectsBitFlips() throws {
        let keyPair = try #require(KeyPair(seed: [UInt8](repeating: 7, count: 32)))
        let message = Array("flip me".utf8)
        let signature = keyPair.sign(message)
        for bit in 0..<(64 * 8) {
            var bytes = signature.bytes
            bytes[bit / 8] ^= 1 << UInt8(bit % 8)
            #expect(!Ed25519.verify(Signature(bytes: bytes)!, of: message, by: keyPair.publicKey), "bit \(bit)")
        }
    }

    @Test("keys, signatures and seeds of the wrong length are refused at construction")
    func wrongLengths() {
        #expect(PublicKey(bytes: [UInt8](repeating: 1, count: 31)) == nil)
        #expect(Signature(bytes: [UInt8](repeating: 1, count: 65)) == nil)
        #expect(KeyPair(seed: [UInt8](repeating: 1, count: 33)) == nil)
        #expect(PublicKey(hex: "zz") == nil)
    }

    @Test("generated key pairs differ and sign verifiably")
    func generate() {
        let a = KeyPair.generate()
        let b = KeyPair.generate()
        #expect(a.publicKey != b.publicKey)
        #expect(Ed25519.verify(a.sign([1, 2, 3]), of: [1, 2, 3], by: a.publicKey))
    }
}

@Suite("SHA-256")
struct SHA256Tests {
    static let implementations = SHA256Implementation.allCases.filter(\.isAvailable)

    static func hash(_ bytes: [UInt8], using implementation: SHA256Implementation) -> [UInt8] {
        bytes.withUnsafeBufferPointer { SHA256.hash($0, using: implementation) }
    }

    @Test("FIPS 180-2 vectors", arguments: implementations)
    func vectors(implementation: SHA256Implementation) {
        #expect(Hex.encode(Self.hash([], using: implementation)) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Hex.encode(Self.hash(Array("abc".utf8), using: implementation)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Hex.encode(Self.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8), using: implementation))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // One million 'a's: 15,625 whole blocks and a padding-only final block.
        var hasher = SHA256Hasher(using: implementation)
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { hasher.update(chunk) }
        #expect(Hex.encode(hasher.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("incremental hashing equals one-shot hashing", arguments: implementations)
    func incremental(implementation: SHA256Implementation) {
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 31) }
        var hasher = SHA256Hasher(using: implementation)
        hasher.update(Array(data[0..<10]))
        hasher.update(Array(data[10..<999]))
        hasher.update(Array(data[999...]))
        #expect(hasher.finalize() == Self.hash(data, using: implementation))
    }

    @Test("the default is the fastest implementation this CPU has")
    func preferred() {
        #expect(SHA256Implementation.preferred.isAvailable)
        #expect(SHA256Implementation.libsodium.isAvailable)
        let expected: SHA256Implementation = SHA256Implementation.shaExtensions.isAvailable ? .shaExtensions : .libsodium
        #expect(SHA256Implementation.preferred == expected)
    }

    /// Every length across the one- and two-block padding boundaries and
    /// several whole blocks, in one shot and fed in uneven pieces, against
    /// libsodium. On a CPU without the SHA extensions the default is libsodium
    /// itself, and that is what the test checks there.
    @Test("the SHA extensions agree with libsodium on every length up to 1,100 bytes")
    func extensionsAgreeWithLibsodium() {
        guard SHA256Implementation.shaExtensions.isAvailable else {
            #expect(SHA256Implementation.preferred == .libsodium)
            return
        }
        var generator = SystemRandomNumberGenerator()
        let data = (0..<1100).map { _ in UInt8.random(in: 0...255, using: &generator) }
        for length in 0...data.count {
            let input = Array(data[0..<length])
            let reference = Self.hash(input, using: .libsodium)
            #expect(Self.hash(input, using: .shaExtensions) == reference, "one shot, \(length) bytes")
            var hasher = SHA256Hasher(using: .shaExtensions)
            var offset = 0
            let step = 1 + length % 71
            while offset < length {
                let end = min(length, offset + step)
                hasher.update(Array(input[offset..<end]))
                offset = end
            }
            #expect(hasher.finalize() == reference, "in pieces of \(step), \(length) bytes")
        }
    }
}

@Suite("Hex")
struct HexTests {
    @Test("round trip and rejection of malformed text")
    func roundTrip() {
        let bytes: [UInt8] = [0, 1, 0xab, 0xff]
        #expect(Hex.encode(bytes) == "0001abff")
        #expect(Hex.decode("0001ABff") == bytes)
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("0g") == nil)
    }
}

@Suite("Secret key files")
struct KeyFileTests {
    /// Removed when the test ends (a suite instance per test).
    let scratch = TemporaryDirectory(prefix: "stele-keyfile")
    func scratchPath(_ name: String) -> String { scratch.file(name) }

    @Test("a key file is written with mode 0600 and reads back the same key")
    func roundTrip() throws {
        let path = scratchPath("replica.key")
        let keyPair = KeyPair.generate()
        try KeyFile.write(keyPair, to: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.uint16Value == 0o600)
        let read = try KeyFile.read(from: path)
        #expect(read.publicKey == keyPair.publicKey)
        #expect(read.seed == keyPair.seed)
    }

    @Test("a key file readable by others is refused with a clear error")
    func refusesInsecurePermissions() throws {
        let path = scratchPath("replica.key")
        try KeyFile.write(KeyPair.generate(), to: path)
        chmod(path, 0o644)
        #expect(throws: KeyFileError(code: .insecurePermissions(mode: 0o644), path: path)) {
            try KeyFile.read(from: path)
        }
        let error = KeyFileError(code: .insecurePermissions(mode: 0o644), path: path)
        #expect(error.description.contains("chmod 600"))
    }

    @Test("an existing key file is not overwritten by accident")
    func refusesOverwrite() throws {
        let path = scratchPath("replica.key")
        try KeyFile.write(KeyPair.generate(), to: path)
        #expect(throws: KeyFileError(code: .alreadyExists, path: path)) {
            try KeyFile.write(KeyPair.generate(), to: path)
        }
    }

    @Test("missing, malformed and inconsistent key files give typed errors")
    func malformed() throws {
        let missing = scratchPath("none.key")
        #expect(throws: KeyFileError(code: .notFound, path: missing)) { try KeyFile.read(from: missing) }

        let path = scratchPath("bad.key")
        _ = FileManager.default.createFile(atPath: path, contents: Data("hello\n".utf8), attributes: [.posixPermissions: 0o600])
        #expect { try KeyFile.read(from: path) } throws: { error in
            guard let error = error as? KeyFileError, case .malformed = error.code else { return false }
            return error.path == path
        }

        let mismatched = scratchPath("mismatch.key")
        let text = "stele-ed25519-secret-key v1\nseed \(String(repeating: "11", count: 32))\npublic \(String(repeating: "22", count: 32))\n"
        _ = FileManager.default.createFile(atPath: mismatched, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        #expect { try KeyFile.read(from: mismatched) } throws: { error in
            guard let error = error as? KeyFileError, case .malformed(let reason) = error.code else { return false }
            return reason.contains("does not match")
        }
    }
}
