import ArgumentParser
import Foundation
import SteleAudit
import SteleCore
import SteleCrypto
import SteleLedger
import SteleNode

/// Options for commands that read one replica's ledger.
struct LedgerReadOptions: ParsableArguments {
    @OptionGroup var directory: DirectoryOption

    @Option(help: "Which replica's ledger to read.")
    var replica: UInt16 = 0

    func open() -> (ClusterConfig, LedgerStore) {
        let dir = directory.directory
        do {
            let config = try dir.loadConfig()
            guard config.isMember(ReplicaID(replica)) else { fail("replica \(replica) is not in the cluster", code: 2) }
            let store = try LedgerStore.open(path: dir.ledgerPath(ReplicaID(replica)), expectedGenesis: config.genesis, access: .readOnly)
            return (config, store)
        } catch {
            fail("\(error)", code: 2)
        }
    }
}

func describe(_ block: CertifiedBlock, verbose: Bool) -> String {
    let signers = block.commitSignatures.map { "r\($0.replica.value)" }.joined(separator: ",")
    var lines = ["height \(block.height.value)  hash \(block.hash.hex)  view \(block.certificateView.value)  txs \(block.batch.count)  signed by \(signers)"]
    if verbose {
        lines.append("  prev  \(block.prevHash.hex)")
        lines.append("  batch \(block.batchDigest.hex)")
        for request in block.batch {
            let text = String(decoding: request.payload, as: UTF8.self)
            lines.append("  tx client \(request.client.hex.prefix(16))… t=\(request.timestamp)  \(text.prefix(120))")
        }
    }
    return lines.joined(separator: "\n")
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print one block of a replica's ledger.")

    @OptionGroup var options: LedgerReadOptions

    @Argument(help: "The block height (1 = first block after genesis).")
    var height: UInt64

    func run() throws {
        let (_, store) = options.open()
        guard height >= 1, height <= store.head.height.value else {
            fail("height \(height) is not in the ledger (it holds 1 ... \(store.head.height.value))", code: 2)
        }
        do {
            print(describe(try store.block(at: SequenceNumber(height)), verbose: true))
        } catch {
            fail("\(error)", code: 2)
        }
    }
}

struct Tail: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the last blocks of a replica's ledger; -f keeps following it.")

    @OptionGroup var options: LedgerReadOptions

    @Option(name: [.customShort("n"), .long], help: "How many blocks to print.")
    var count: UInt64 = 10

    @Flag(name: .shortAndLong, help: "Keep printing new blocks as they are committed.")
    var follow = false

    func run() throws {
        var (_, store) = options.open()
        let head = store.head.height.value
        var next = head >= count ? head - count + 1 : 1
        while true {
            let top = store.head.height.value
            if next <= top {
                do {
                    for block in try store.blocks(from: SequenceNumber(next), to: SequenceNumber(top)) {
                        print(describe(block, verbose: false))
                    }
                } catch {
                    fail("\(error)", code: 2)
                }
                next = top + 1
            }
            guard follow else { return }
            fflush(nil)
            usleep(500_000)
            (_, store) = options.open()
        }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Audit the cluster's ledger files (the same checks as stele-check).",
        discussion: "Exit 0: all invariants hold; 1: a violation; 2: usage or I/O error.")

    @OptionGroup var options: DirectoryOption

    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() throws {
        let directory = options.directory
        var command = CheckCommand(configPath: directory.configPath, ledgerPaths: [directory.ledgersDirectory], json: json, quiet: false)
        command.showProgress = isatty(STDERR_FILENO) == 1
        let status = command.run(
            output: { FileHandle.standardOutput.write(Data($0.utf8)) },
            errors: { FileHandle.standardError.write(Data($0.utf8)) })
        throw ExitCode(status)
    }
}
