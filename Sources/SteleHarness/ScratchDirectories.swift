import Foundation

/// Scratch directories under the temporary directory, all removed when this object goes away.
/// A test suite keeps one as a stored property: Swift Testing makes a suite instance per test,
/// so each test's directories are removed when it ends, also when it fails.
public final class ScratchDirectories {
    private let prefix: String
    private var directories: [URL] = []

    public init(prefix: String) { self.prefix = prefix }

    deinit {
        for directory in directories { try? FileManager.default.removeItem(at: directory) }
    }

    /// A path named `name` inside a fresh directory of its own.
    public func path(_ name: String) -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        directories.append(directory)
        return directory.appendingPathComponent(name).path
    }
}
