import ArgumentParser
import Foundation
import Logging
import SteleCore
import SteleCrypto
import SteleNode

@main
struct Stele: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stele",
        abstract: "A Byzantine fault-tolerant replicated ledger (PBFT, Ed25519, auditable ledger files).",
        discussion: """
        Quick start (two terminals):
          stele cluster init --replicas 4 --dir ./demo
          stele cluster start --dir ./demo              # terminal 1: runs 4 replicas
          stele submit --dir ./demo "hello, ledger"     # terminal 2
          stele cluster status --dir ./demo
          stele tail --dir ./demo
          stele check --dir ./demo                      # audit the four ledger files
        """,
        subcommands: [Cluster.self, ReplicaCommand.self, Submit.self, Show.self, Tail.self, Check.self, Bench.self, Chaos.self]
    )
}

struct Cluster: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Create, start, stop and inspect a local cluster.",
        subcommands: [ClusterInit.self, ClusterStart.self, ClusterStop.self, ClusterStatus.self]
    )
}

/// Options shared by commands that work on a cluster directory.
struct DirectoryOption: ParsableArguments {
    @Option(name: .long, help: "The cluster directory (made by `stele cluster init`).")
    var dir: String

    var directory: ClusterDirectory { ClusterDirectory(dir) }

    /// The cluster config and the CLI's client key, or a clear error and `exitCode`.
    func loadClient(exitCode: Int32 = 2) -> (ClusterConfig, KeyPair) {
        do {
            return (try directory.loadConfig(), try KeyFile.read(from: directory.clientKeyPath))
        } catch {
            fail("\(error)", code: exitCode)
        }
    }
}

func makeLogger(_ label: String, level: Logger.Level = .info) -> Logger {
    var logger = Logger(label: label) { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
    logger.logLevel = level
    return logger
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Prints to stderr and exits with `code`.
func fail(_ message: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("stele: \(message)\n".utf8))
    exit(code)
}
