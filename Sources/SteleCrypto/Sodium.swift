internal import CSodium

/// libsodium is initialised exactly once per process, on first use of any crypto API.
enum Sodium {
    static let initialised: Bool = {
        let status = sodium_init()
        // 0 = initialised now, 1 = already initialised; -1 = unusable.
        precondition(status >= 0, "sodium_init() failed: libsodium cannot be used")
        return true
    }()

    @inline(__always)
    static func ensureInitialised() {
        precondition(initialised)
    }
}
