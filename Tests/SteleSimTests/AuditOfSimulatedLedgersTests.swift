import PBFT
import SteleAudit
import SteleCore
import SteleTestSupport
import SteleSim
import Testing

/// The simulator's ledgers, exported in the real ledger format, audited by stele-check's
/// library: honest runs pass; colluding equivocators beyond f produce a fork that the auditor
/// reports with the replicas that signed both sides.
@Suite("stele-check on the simulator's ledgers")
struct AuditOfSimulatedLedgersTests {
    func audit(_ report: SimulationReport) throws -> AuditReport {
        let sources = report.ledgers.keys.sorted().map { replica in
            LedgerSource.memory(
                name: "replica-\(replica.value).ledger",
                bytes: LedgerExport.ledgerBytes(config: report.config, blocks: report.ledgers[replica] ?? [], checkpoints: report.checkpoints[replica] ?? []))
        }
        return try Auditor(config: report.config).audit(sources: sources)
    }

    @Test("runs that keep safety give ledgers on which every audit invariant holds", arguments: [UInt64](1...12))
    func honestRunsAuditClean(seed: UInt64) async throws {
        try await offCooperativePool {
            var options = SimulationOptions(seed: seed)
            options.byzantineCount = 1
            options.strategy = .all
            options.crashes = false
            let report = Simulation<Replica>(options: options).run()
            // The simulator's own safety check and the auditor must agree.
            let safetyViolations = report.violations.filter { $0.code != .liveness }
            let audit = try audit(report)
            let violations = audit.findings.filter { $0.severity == .violation }
            #expect(safetyViolations.isEmpty == violations.isEmpty,
                    "simulator: \(safetyViolations.map(\.description)); auditor: \(violations.map(\.message))")
            if safetyViolations.isEmpty {
                #expect(audit.verdict == .pass, "seed \(seed): \(violations.prefix(3).map(\.message))")
                #expect(report.committedHeightMax > 0, "seed \(seed) committed something")
            }
        }
    }

    @Test("with f+1 colluding equivocators the audit finds the fork and names the colluders")
    func forkIsReported() async throws {
        try await offCooperativePool {
            var found = false
            for seed in UInt64(1)...60 {
                var options = SimulationOptions(seed: seed)
                options.byzantineCount = 2
                options.strategy = .only(.equivocate)
                let report = Simulation<Replica>(options: options).run()
                guard !report.forks.isEmpty else { continue }
                let audit = try audit(report)
                let forks = audit.findings(.fork)
                #expect(!forks.isEmpty, "seed \(seed): the simulator saw a fork, the auditor must too")
                let colluders = Set(report.byzantine.keys.map(\.value))
                for fork in forks {
                    // Two certificates of 3 signers among 4 replicas share at least 2 signers. In one
                    // view only the colluders sign both sides (that is proof of equivocation); across
                    // views an honest replica can be led to commit the other digest after a view
                    // change the colluders subverted, so there it is only a suspect.
                    let forensics = try #require(fork.forensics)
                    let signedBoth = Set(forensics.signedBoth)
                    #expect(signedBoth.count >= 2, "seed \(seed): signed both: \(signedBoth)")
                    if forensics.sameView {
                        #expect(signedBoth.isSubset(of: colluders), "seed \(seed): signed both \(signedBoth), colluders \(colluders)")
                        #expect(forensics.equivocationProven)
                    }
                }
                #expect(audit.verdict == .violation)
                found = true
                break
            }
            #expect(found, "some seed in 1...60 forks with 2 colluding equivocators on n = 4")
        }
    }
}
