import SteleCrypto

/// A Merkle tree hash over an ordered list of byte strings, as RFC 9162 §2.1 defines it, with
/// domain-separated leaves and nodes so that no leaf can pass for an inner node:
///
///     MTH({})      = SHA-256()
///     MTH({d0})    = SHA-256(0x00 || d0)
///     MTH(D[n])    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])),  k the largest power of 2 < n
///
/// The foundation of transaction receipts: a block can commit to its transactions through one
/// root, and an audit path proves one transaction's place in it without the others.
public enum MerkleTree {
    static let leafPrefix: UInt8 = 0x00
    static let nodePrefix: UInt8 = 0x01
    /// The longest audit path any verifier accepts (2^64 leaves need 64 hashes).
    public static let pathCountMax = 64

    /// The hash of one leaf: SHA-256(0x00 || data).
    public static func leafHash(_ data: [UInt8]) -> Digest {
        var hasher = SHA256Hasher()
        hasher.update([leafPrefix])
        hasher.update(data)
        return Digest(bytes: hasher.finalize())!
    }

    /// The hash of an inner node: SHA-256(0x01 || left || right).
    public static func nodeHash(_ left: Digest, _ right: Digest) -> Digest {
        var hasher = SHA256Hasher()
        hasher.update([nodePrefix])
        hasher.update(left.bytes)
        hasher.update(right.bytes)
        return Digest(bytes: hasher.finalize())!
    }

    /// MTH of `leaves` (each the raw leaf data, not yet hashed).
    public static func root(_ leaves: [[UInt8]]) -> Digest {
        root(ofLeafHashes: leaves.map(leafHash))
    }

    /// MTH of a list whose leaves are already hashed with `leafHash`.
    public static func root(ofLeafHashes hashes: [Digest]) -> Digest {
        guard !hashes.isEmpty else { return Digest.of([]) }
        return subtreeRoot(hashes[...])
    }

    /// The audit path of leaf `index` (RFC 9162 §2.1.3.1, PATH(m, D[n])): the sibling hashes from
    /// the leaf up to the root, nearest first. Nil if `index` is not a leaf of the tree.
    public static func auditPath(forLeafAt index: Int, ofLeafHashes hashes: [Digest]) -> [Digest]? {
        guard index >= 0, index < hashes.count else { return nil }
        var path = [Digest]()
        var subtree = hashes[...]
        var position = index
        // Walk down from the root; record each sibling, then reverse to nearest-first.
        while subtree.count > 1 {
            let split = largestPowerOfTwo(below: subtree.count)
            let left = subtree.prefix(split)
            let right = subtree.dropFirst(split)
            if position < split {
                path.append(subtreeRoot(right))
                subtree = left
            } else {
                path.append(subtreeRoot(left))
                subtree = right
                position -= split
            }
        }
        return path.reversed()
    }

    /// Whether `path` proves that `leafHash` is leaf `index` of a tree of `leafCount` leaves whose
    /// root is `root` (RFC 9162 §2.1.3.2). Any wrong index, count, hash or path length fails.
    public static func verify(
        leafHash: Digest, index: Int, leafCount: Int, path: [Digest], root: Digest
    ) -> Bool {
        guard index >= 0, index < leafCount, path.count <= pathCountMax else { return false }
        var fn = UInt64(index)
        var sn = UInt64(leafCount - 1)
        var hash = leafHash
        for sibling in path {
            guard sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                hash = nodeHash(sibling, hash)
                if fn & 1 == 0 {
                    while fn & 1 == 0, fn != 0 {
                        fn >>= 1
                        sn >>= 1
                    }
                }
            } else {
                hash = nodeHash(hash, sibling)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 && hash == root
    }

    private static func subtreeRoot(_ hashes: ArraySlice<Digest>) -> Digest {
        precondition(!hashes.isEmpty, "a subtree has at least one leaf")
        if hashes.count == 1 { return hashes[hashes.startIndex] }
        let split = largestPowerOfTwo(below: hashes.count)
        return nodeHash(subtreeRoot(hashes.prefix(split)), subtreeRoot(hashes.dropFirst(split)))
    }

    /// The largest power of two strictly below `count` (count >= 2).
    static func largestPowerOfTwo(below count: Int) -> Int {
        precondition(count >= 2, "only a tree of two or more leaves splits")
        var split = 1
        while split << 1 < count { split <<= 1 }
        return split
    }
}
