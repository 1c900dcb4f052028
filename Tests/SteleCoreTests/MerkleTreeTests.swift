import SteleCore
import SteleCrypto
import Testing

/// RFC 9162 §2.1: the Merkle tree hash, audit paths and their verification.
@Suite struct MerkleTreeTests {
    /// The definition, written out again as plainly as possible (byte concatenation and
    /// one-shot SHA-256), to check the implementation against.
    static func referenceRoot(_ leaves: ArraySlice<[UInt8]>) -> [UInt8] {
        if leaves.isEmpty { return SHA256.hash([]) }
        if leaves.count == 1 { return SHA256.hash([0x00] + leaves[leaves.startIndex]) }
        var k = 1
        while k * 2 < leaves.count { k *= 2 }
        let left = referenceRoot(leaves.prefix(k))
        let right = referenceRoot(leaves.dropFirst(k))
        return SHA256.hash([0x01] + left + right)
    }

    static func leaves(_ count: Int) -> [[UInt8]] {
        (0..<count).map { index in [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: index % 5) + [UInt8(index & 0xff)] }
    }

    @Test func theEmptyTreeAndASingleEmptyLeafHaveTheirKnownRoots() {
        #expect(MerkleTree.root([]).hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(MerkleTree.root([[]]).hex == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    }

    @Test(arguments: Array(1...33) + [64, 65, 100])
    func theRootMatchesTheDefinition(_ count: Int) {
        let leaves = MerkleTreeTests.leaves(count)
        #expect(MerkleTree.root(leaves).bytes == MerkleTreeTests.referenceRoot(leaves[...]))
    }

    @Test(arguments: Array(1...20) + [33, 64, 65])
    func everyLeafsAuditPathVerifiesAndNothingElseDoes(_ count: Int) throws {
        let hashes = MerkleTreeTests.leaves(count).map(MerkleTree.leafHash)
        let root = MerkleTree.root(ofLeafHashes: hashes)
        for index in 0..<count {
            let path = try #require(MerkleTree.auditPath(forLeafAt: index, ofLeafHashes: hashes))
            let leaf = hashes[index]
            #expect(MerkleTree.verify(leafHash: leaf, index: index, leafCount: count, path: path, root: root))
            // Another leaf's hash, another position, another size, another root: all fail.
            let other = hashes[(index + 1) % count]
            if count > 1 {
                #expect(!MerkleTree.verify(leafHash: other, index: index, leafCount: count, path: path, root: root))
                #expect(!MerkleTree.verify(leafHash: leaf, index: (index + 1) % count, leafCount: count, path: path, root: root))
            }
            // (A size alone is not bound: the same path can verify under another size whose tree
            // has the same shape along it, as RFC 9162 allows; a receipt takes the size from the
            // signed block.) An index at or past the size fails.
            #expect(!MerkleTree.verify(leafHash: leaf, index: count, leafCount: count, path: path, root: root))
            #expect(!MerkleTree.verify(leafHash: leaf, index: index, leafCount: count, path: path, root: Digest.of(root.bytes)))
            // A path with one hash changed, one missing or one extra fails.
            for position in path.indices {
                var changed = path
                changed[position] = Digest.of(changed[position].bytes)
                #expect(!MerkleTree.verify(leafHash: leaf, index: index, leafCount: count, path: changed, root: root))
            }
            if !path.isEmpty {
                #expect(!MerkleTree.verify(leafHash: leaf, index: index, leafCount: count, path: path.dropLast(), root: root))
            }
            #expect(!MerkleTree.verify(leafHash: leaf, index: index, leafCount: count, path: path + [leaf], root: root))
        }
        #expect(MerkleTree.auditPath(forLeafAt: count, ofLeafHashes: hashes) == nil)
        #expect(MerkleTree.auditPath(forLeafAt: -1, ofLeafHashes: hashes) == nil)
    }

    /// Domain separation: the two children of the root, taken as one leaf, do not make a leaf
    /// whose hash is the root (without the 0x00 / 0x01 prefixes they would).
    @Test func anInnerNodeCannotPassForALeaf() {
        let hashes = MerkleTreeTests.leaves(2).map(MerkleTree.leafHash)
        let root = MerkleTree.root(ofLeafHashes: hashes)
        let forged = MerkleTree.leafHash(hashes[0].bytes + hashes[1].bytes)
        #expect(forged != root)
        #expect(!MerkleTree.verify(leafHash: hashes[0], index: 0, leafCount: 1, path: [], root: root))
        #expect(MerkleTree.nodeHash(hashes[0], hashes[1]) == root)
    }

    @Test func pathsBeyondTheLengthLimitAreRefusedWithoutHashing() {
        let leaf = MerkleTree.leafHash([1])
        let path = [Digest](repeating: leaf, count: MerkleTree.pathCountMax + 1)
        #expect(!MerkleTree.verify(leafHash: leaf, index: 0, leafCount: Int.max, path: path, root: leaf))
    }
}
