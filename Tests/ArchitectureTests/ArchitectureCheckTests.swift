import Foundation
import SteleTestSupport
import Testing

/// `tools/check-architecture` holds every import to the allowed-imports table in
/// docs/architecture.md. It runs here on this checkout, and on copies of it with one rule
/// broken on purpose, so the check itself is shown to fail, and to say where.
@Suite("The package graph: tools/check-architecture")
struct ArchitectureCheckTests {
    /// The checkout this file is in (Tests/ArchitectureTests/ is two levels down).
    static let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    struct Run {
        let status: Int32
        /// Standard output and standard error, interleaved.
        let output: String
    }

    /// Runs the checkout's script against the tree at `root`.
    static func check(root: URL) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let script = checkout.appendingPathComponent("tools/check-architecture")
        process.arguments = ["bash", script.path, "--root", root.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    /// A copy of what the check reads: Package.swift, docs/architecture.md, Sources/, Tests/.
    static func copyOfTheCheckout(in scratch: TemporaryDirectory) throws -> URL {
        let root = scratch.fileURL("checkout")
        let files = FileManager.default
        try files.createDirectory(at: root.appendingPathComponent("docs"), withIntermediateDirectories: true)
        for item in ["Package.swift", "docs/architecture.md", "Sources", "Tests"] {
            try files.copyItem(at: checkout.appendingPathComponent(item), to: root.appendingPathComponent(item))
        }
        return root
    }

    static func write(_ text: String, to relativePath: String, in root: URL) throws {
        try Data(text.utf8).write(to: root.appendingPathComponent(relativePath))
    }

    static func edit(_ relativePath: String, in root: URL, _ change: (String) -> String) throws {
        let url = root.appendingPathComponent(relativePath)
        let before = try String(contentsOf: url, encoding: .utf8)
        let after = change(before)
        #expect(after != before, "the edit of \(relativePath) must change it")
        try Data(after.utf8).write(to: url)
    }

    @Test("this checkout keeps to the documented graph")
    func theCheckoutPasses() throws {
        let run = try Self.check(root: Self.checkout)
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("check-architecture: ok"), "\(run.output)")
    }

    @Test("the consensus core importing NIO fails, naming the file, the line, the module and the import")
    func theCoreImportingNIOFails() throws {
        let scratch = TemporaryDirectory(prefix: "stele-architecture")
        let root = try Self.copyOfTheCheckout(in: scratch)
        try Self.write("import SteleCore\nimport NIOCore\n", to: "Sources/PBFT/Broken.swift", in: root)
        let run = try Self.check(root: root)
        #expect(run.status == 1, "\(run.output)")
        let expected = "Sources/PBFT/Broken.swift:2: PBFT imports NIOCore, an I/O module"
        #expect(run.output.contains(expected), "\(run.output)")
        #expect(run.output.contains("1 violation(s)"), "only the broken import is reported: \(run.output)")
    }

    @Test("a module importing a module its row does not list fails")
    func anImportOutsideTheRowFails() throws {
        let scratch = TemporaryDirectory(prefix: "stele-architecture")
        let root = try Self.copyOfTheCheckout(in: scratch)
        try Self.write("@testable import SteleSim\n", to: "Sources/SteleLedger/Broken.swift", in: root)
        try Self.write("internal import Foundation\n", to: "Sources/PBFT/AlsoBroken.swift", in: root)
        let run = try Self.check(root: root)
        #expect(run.status == 1, "\(run.output)")
        let ledger = "Sources/SteleLedger/Broken.swift:1: SteleLedger imports SteleSim, which the graph forbids"
        #expect(run.output.contains(ledger), "\(run.output)")
        let core = "Sources/PBFT/AlsoBroken.swift:1: PBFT imports Foundation, which the graph forbids"
        #expect(run.output.contains(core), "\(run.output)")
    }

    @Test("an import that Package.swift does not declare for the target fails")
    func anUndeclaredImportFails() throws {
        let scratch = TemporaryDirectory(prefix: "stele-architecture")
        let root = try Self.copyOfTheCheckout(in: scratch)
        try Self.edit("Package.swift", in: root) {
            $0.replacingOccurrences(of: #".target(name: "PBFT", dependencies: ["SteleCore", "SteleCrypto"])"#,
                                    with: #".target(name: "PBFT", dependencies: ["SteleCore"])"#)
        }
        let run = try Self.check(root: root)
        #expect(run.status == 1, "\(run.output)")
        let expected = "PBFT imports SteleCrypto, which Package.swift does not declare as a dependency of PBFT"
        #expect(run.output.contains(expected), "\(run.output)")
        #expect(run.output.contains("Sources/PBFT/"), "the message names the file: \(run.output)")
    }

    @Test("a declared dependency that no file imports fails")
    func anUnusedDependencyFails() throws {
        let scratch = TemporaryDirectory(prefix: "stele-architecture")
        let root = try Self.copyOfTheCheckout(in: scratch)
        let directory = root.appendingPathComponent("Tests/PBFTTests")
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) where name.hasSuffix(".swift") {
            let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            let stripped = text.replacingOccurrences(of: "import SteleTestSupport\n", with: "")
            try Self.write(stripped, to: "Tests/PBFTTests/\(name)", in: root)
        }
        let run = try Self.check(root: root)
        #expect(run.status == 1, "\(run.output)")
        let expected = "Package.swift: PBFTTests depends on SteleTestSupport, but no file in Tests/PBFTTests imports it"
        #expect(run.output.contains(expected), "\(run.output)")
    }

    @Test("a table that lets the core import an I/O module fails, as does a target without a row")
    func aLooseTableFails() throws {
        let scratch = TemporaryDirectory(prefix: "stele-architecture")
        let root = try Self.copyOfTheCheckout(in: scratch)
        try Self.edit("docs/architecture.md", in: root) {
            $0.replacingOccurrences(of: "\nPBFT:           SteleCore SteleCrypto\n",
                                    with: "\nPBFT:           SteleCore SteleCrypto NIOCore\n")
                .replacingOccurrences(of: "\nstele-check:", with: "\n# stele-check:")
        }
        let run = try Self.check(root: root)
        #expect(run.status == 1, "\(run.output)")
        let expected = "row PBFT allows NIOCore, but the consensus core imports no I/O module"
        #expect(run.output.contains(expected), "\(run.output)")
        #expect(run.output.contains("Package.swift: target stele-check has no row"), "\(run.output)")
    }
}
