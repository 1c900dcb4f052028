import Foundation

/// A fresh directory under the system's temporary directory, removed with everything in it
/// when this object goes away. A suite keeps one as a stored property: Swift Testing makes a
/// suite instance per test, so each test's directory goes when the test ends, also when it fails.
public final class TemporaryDirectory: @unchecked Sendable {
    public let url: URL
    public var path: String { url.path }

    /// `prefix` names the directory (`stele-wal-<UUID>`), so a leftover says whose it was.
    public init(prefix: String = "stele-test") {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            preconditionFailure("cannot create the scratch directory \(url.path): \(error)")
        }
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    /// The path of `name` inside this directory (not created).
    public func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// The URL of `name` inside this directory (not created).
    public func fileURL(_ name: String) -> URL { url.appendingPathComponent(name) }
}
