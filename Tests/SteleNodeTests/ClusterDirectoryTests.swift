import Foundation
import Testing
import SteleCore
import SteleCrypto
import SteleTestSupport
@testable import SteleNode

@Suite("stele cluster init")
struct ClusterDirectoryTests {
    /// Removed when the test ends (a suite instance per test).
    let scratchDirectory = TemporaryDirectory(prefix: "stele-init")
    /// A cluster directory that `cluster init` has yet to create.
    func scratch() -> String { scratchDirectory.file("cluster") }

    @Test("init writes the config, one 0600 key per replica and a client key, all consistent")
    func initialize() throws {
        let root = scratch()
        let config = try ClusterDirectory.initialize(root: root, replicas: 4, f: nil, host: "127.0.0.1", basePort: 7400, force: false)
        let directory = ClusterDirectory(root)
        #expect(config.n == 4)
        #expect(config.f == 1)
        #expect(try directory.loadConfig() == config)
        for replica in config.replicas {
            let path = directory.keyPath(replica.id)
            let mode = (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.uint16Value
            #expect(mode == 0o600)
            #expect(try KeyFile.read(from: path).publicKey == replica.publicKey)
            #expect(replica.port == UInt16(7400 + Int(replica.id.value)))
        }
        #expect(FileManager.default.fileExists(atPath: directory.clientKeyPath))
    }

    @Test("init refuses n < 3f+1 with the PBFT rule in the message")
    func refusesTooFewReplicas() {
        let root = scratch()
        #expect { try ClusterDirectory.initialize(root: root, replicas: 3, f: 1, host: "127.0.0.1", basePort: 7400, force: false) } throws: { error in
            "\(error)".contains("n >= 3f+1 = 4")
        }
        #expect(!FileManager.default.fileExists(atPath: ClusterDirectory(root).configPath))
    }

    @Test("init refuses to replace an existing cluster unless forced")
    func refusesExisting() throws {
        let root = scratch()
        let first = try ClusterDirectory.initialize(root: root, replicas: 4, f: nil, host: "127.0.0.1", basePort: 7400, force: false)
        #expect { try ClusterDirectory.initialize(root: root, replicas: 4, f: nil, host: "127.0.0.1", basePort: 7400, force: false) } throws: { error in
            "\(error)".contains("--force")
        }
        #expect(try ClusterDirectory(root).loadConfig() == first)
        let second = try ClusterDirectory.initialize(root: root, replicas: 7, f: nil, host: "127.0.0.1", basePort: 7400, force: true)
        #expect(second.n == 7)
        #expect(second.f == 2)
        #expect(second.cluster != first.cluster)
    }

    @Test("a missing cluster directory says how to create one")
    func missing() {
        #expect { try ClusterDirectory("/nonexistent/stele").loadConfig() } throws: { error in
            "\(error)".contains("stele cluster init")
        }
    }
}
