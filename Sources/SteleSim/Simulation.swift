import PBFT
import SteleCore
import SteleCrypto

/// One deterministic run: a cluster of simulated replicas (some Byzantine), clients, a faulty
/// network, crashes and restarts — all driven by one seed. A safety phase with faults is
/// followed by healing and a liveness phase; then the honest ledgers go to `SafetyChecker`.
///
/// The shells here are thin: they perform the core's actions in order (persist before send),
/// verify every incoming signature before the core sees a message, and add no protocol logic.
public final class Simulation<Core: ConsensusCore> {
    public enum Phase: Sendable { case safety, liveness, finished }

    /// Random streams, one per subsystem.
    enum Stream: UInt64 {
        case setup = 1, network, faults, clients, adversary, codec
        /// Byzantine replica r's `ReplicaAdversary` draws from stream `replicaAdversaries + r`.
        case replicaAdversaries = 0x100
    }

    public let options: SimulationOptions
    public let config: ClusterConfig
    public let faults: NetworkFaults
    public private(set) var nodes: [SimNode<Core>] = []
    public private(set) var clients: [SimClient] = []
    public private(set) var tick: UInt64 = 0
    public private(set) var phase: Phase = .safety
    public private(set) var violations: [InvariantViolation] = []
    public private(set) var stats = SimulationStats()
    /// Called with one line per notable event when set (`--verbose`).
    public var traceSink: ((String) -> Void)?

    var instances: [ReplicaID: [Int]] = [:]
    var clientIndexByKey: [PublicKey: Int] = [:]
    var network: SimNetwork
    var faultRandom: SimRandom
    var clientRandom: SimRandom
    var codecRandom: SimRandom
    var adversary: Adversary
    var cache: SignatureCache
    var trace = TraceRecorder()
    var signedDigests: [SignedSlot: Digest] = [:]
    var partitionEndTick: UInt64?
    var reportedEquivocators = Set<ReplicaID>()
    /// The tick the faults healed (the liveness phase's start).
    var healTick: UInt64 = 0
    /// "node-index code" of each core invariant already reported.
    var reportedCoreInvariants: Set<String> = []
    /// The client whose turn it is to submit the sustained load's next request.
    var loadTurn = 0
    /// Requests accepted later than `latencyBoundTicks` after submission (or healing).
    var lateAcceptances: [String] = []
    static var signedSlotsMax: Int { 2_000_000 }

    public init(options: SimulationOptions) {
        precondition(options.replicaCount >= 1, "a cluster has at least one replica")
        precondition(options.byzantineCount >= 0 && options.byzantineCount <= options.replicaCount, "K is between 0 and n")
        self.options = options
        var setup = SimRandom(seed: options.seed, stream: Stream.setup.rawValue)
        let keys = (0..<options.replicaCount).map { Simulation.keyPair(seed: options.seed, role: "replica", index: $0) }
        let cluster = ClusterID(bytes: setup.bytes(ClusterID.byteCount))!
        let endpoints = keys.enumerated().map { index, key in
            ReplicaEndpoint(id: ReplicaID(UInt16(index)), host: "127.0.0.1", port: UInt16(7100 + index), publicKey: key.publicKey)
        }
        do {
            config = try ClusterConfig(cluster: cluster, f: options.f, replicas: endpoints, parameters: Simulation.parameters(&setup))
        } catch {
            preconditionFailure("the simulator built an invalid cluster: \(error)")
        }
        faults = options.networkFaults ? NetworkFaults.random(&setup) : NetworkFaults.healed
        network = SimNetwork(faults: faults, random: SimRandom(seed: options.seed, stream: Stream.network.rawValue), inFlightPacketsMax: options.inFlightPacketsMax)
        faultRandom = SimRandom(seed: options.seed, stream: Stream.faults.rawValue)
        clientRandom = SimRandom(seed: options.seed, stream: Stream.clients.rawValue)
        codecRandom = SimRandom(seed: options.seed, stream: Stream.codec.rawValue)
        cache = SignatureCache(config: config)
        let strategies = Simulation.chooseByzantine(options: options, random: &setup)
        let signers = keys.enumerated().map { ReplicaSigner(replica: ReplicaID(UInt16($0)), cluster: cluster, keyPair: $1) }
        let forger = ClientSigner(cluster: cluster, keyPair: Simulation.keyPair(seed: options.seed, role: "forger", index: 0))
        // The censor's victim is client 0 (when there is one).
        let victim = options.clientCount > 0 ? Simulation.keyPair(seed: options.seed, role: "client", index: 0).publicKey : nil
        adversary = Adversary(
            config: config, signers: Dictionary(uniqueKeysWithValues: strategies.keys.map { ($0, signers[Int($0.value)]) }),
            strategies: strategies, forger: forger, random: SimRandom(seed: options.seed, stream: Stream.adversary.rawValue),
            stream: { SimRandom(seed: options.seed, stream: Stream.replicaAdversaries.rawValue + UInt64($0.value)) },
            censoredClient: victim)
        buildNodes(signers: signers, strategies: strategies)
        buildClients(cluster: cluster)
    }

    // MARK: - Setup

    static func keyPair(seed: UInt64, role: String, index: Int) -> KeyPair {
        var writer = ByteWriter(capacity: 48)
        writer.writeFixed(Array("stele-sim.\(role)".utf8))
        writer.write(seed)
        writer.write(UInt32(index))
        return KeyPair(seed: SHA256.hash(writer.bytes))!
    }

    /// Small windows and timeouts, so checkpoints, garbage collection, view changes and state
    /// transfer all happen within a short run.
    static func parameters(_ random: inout SimRandom) -> ProtocolParameters {
        var parameters = ProtocolParameters()
        parameters.checkpointInterval = [4, 8, 16][random.int(below: 3)]
        parameters.watermarkWindow = parameters.checkpointInterval * UInt64(random.int(in: 2...4))
        parameters.batchSizeMax = [1, 4, 32][random.int(below: 3)]
        parameters.pipelineDepthMax = [1, 4, 16][random.int(below: 3)]
        parameters.viewChangeTimeoutTicks = UInt64(random.int(in: 20...40))
        parameters.viewChangeTimeoutTicksMax = parameters.viewChangeTimeoutTicks * 16
        parameters.retransmitTicks = UInt64(random.int(in: 6...12))
        return parameters
    }

    static func chooseByzantine(options: SimulationOptions, random: inout SimRandom) -> [ReplicaID: ByzantineStrategy] {
        var replicas = (0..<options.replicaCount).map { ReplicaID(UInt16($0)) }
        random.shuffle(&replicas)
        var strategies = [ReplicaID: ByzantineStrategy]()
        for replica in replicas.prefix(options.byzantineCount).sorted() {
            switch options.strategy {
            case .only(let strategy): strategies[replica] = strategy
            case .all: strategies[replica] = ByzantineStrategy.allCases[random.int(below: ByzantineStrategy.allCases.count)]
            }
        }
        return strategies
    }

    func buildNodes(signers: [ReplicaSigner], strategies: [ReplicaID: ByzantineStrategy]) {
        for signer in signers {
            let strategy = strategies[signer.replica]
            let copies = strategy == .twin ? 2 : 1
            for instance in 0..<copies {
                let node = SimNode(
                    index: nodes.count, replica: signer.replica, instance: instance, signer: signer, strategy: strategy,
                    genesisHash: config.genesis.hash, core: Core(config: config, signer: signer, recovery: nil))
                instances[signer.replica, default: []].append(node.index)
                nodes.append(node)
            }
        }
    }

    func buildClients(cluster: ClusterID) {
        for index in 0..<options.clientCount {
            let signer = ClientSigner(cluster: cluster, keyPair: Simulation.keyPair(seed: options.seed, role: "client", index: index))
            clients.append(SimClient(
                index: index, signer: signer, config: config,
                retransmitTicks: config.parameters.viewChangeTimeoutTicks, pendingMax: options.pendingPerClientMax))
            clientIndexByKey[signer.publicKey] = index
        }
    }

    public var byzantine: [ReplicaID: ByzantineStrategy] { adversary.strategies }
    public var honestReplicas: [ReplicaID] { config.replicaIDs.filter { adversary.strategies[$0] == nil } }

    // MARK: - Running

    /// Runs the safety phase, heals, runs the liveness phase (when K <= f), and checks safety.
    public func run() -> SimulationReport {
        log("seed \(options.seed): n=\(config.n) f=\(config.f) byzantine=\(describeByzantine()) faults=\(faults) parameters=\(config.parameters)")
        while tick < options.safetyPhaseTicks, !overloaded { step() }
        if !overloaded { heal() }
        if options.checksLiveness, !overloaded { runLivenessPhase() }
        phase = .finished
        checkSafety()
        return report()
    }

    /// One tick: faults, restarts, deliveries, a `.tick` to every running core, the adversary's
    /// own moves, and the clients.
    public func step() {
        tick += 1
        if phase == .safety { scheduleFaults() }
        restartDue()
        for packet in network.deliverable(at: tick) { deliver(packet) }
        for node in nodes where node.isUp { handle(.tick, at: node) }
        adversaryMoves()
        clientMoves()
        if tick % 100 == 0 { log("tick \(tick): \(statusLine())") }
        if network.inFlightCount >= options.inFlightPacketsMax / 2 { stopOverloaded() }
    }

    var overloaded: Bool { violations.contains { $0.code == .overload } }

    /// Stops the run; names the replicas that sent at least the average number of packets.
    func stopOverloaded() {
        let counts = nodes.map { (node: $0, sent: $0.sentCount) }
        let average = counts.reduce(0) { $0 + $1.sent } / max(1, counts.count)
        let heavy = counts.filter { $0.sent >= average }.map(\.node.replica)
        let perReplica = counts.map { "\($0.node.replica) sent \($0.sent)" }.joined(separator: ", ")
        violations.append(InvariantViolation(
            .overload, replicas: Array(Set(heavy)),
            detail: "\(network.inFlightCount) packets in flight at tick \(tick) (limit \(options.inFlightPacketsMax)): message amplification; \(perReplica)"))
        log("tick \(tick): stopped, network overloaded: \(perReplica)")
    }

    /// Every replica's view, execution and ledger height, and the network's load.
    public func statusLine() -> String {
        let replicas = nodes.map { node -> String in
            guard let core = node.core else { return "\(node.replica) down" }
            return "\(node.replica) \(core.view)\(core.isInViewChange ? "*" : "") exec \(core.lastExecuted.value) stable \(core.stableCheckpoint.value)"
        }
        return replicas.joined(separator: ", ") + "; in flight \(network.inFlightCount), delivered \(stats.deliveredCount), rejected \(stats.rejectedCount)"
    }

    /// Ends the faults: the network heals, partitions lift, crashed replicas restart. Byzantine
    /// replicas stay Byzantine. Every client submits one more request.
    func heal() {
        phase = .liveness
        healTick = tick
        network.faults = .healed
        network.healPartitions()
        partitionEndTick = nil
        for node in nodes {
            node.crashPending = false
            if !node.isUp { node.restartAtTick = tick + 1 }
        }
        log("tick \(tick): healed")
        guard options.checksLiveness else { return }
        for client in clients where client.canSubmit { submit(client) }
    }

    var everyRequestAccepted: Bool { clients.allSatisfy { $0.pending.isEmpty } }

    // MARK: - Latency-bounded liveness

    /// B, the latency bound of the liveness phase: `SimulationOptions.latencyBoundTimeouts`
    /// times the largest view-change timeout (viewChangeTimeoutTicksMax). After healing, every
    /// request must be accepted by its client within B ticks of its submission (of healing, for
    /// requests submitted before).
    public var latencyBoundTicks: UInt64 { options.latencyBoundTimeouts * config.parameters.viewChangeTimeoutTicksMax }

    /// Clients keep submitting until this tick (sustained load, so that a primary that leaves
    /// out one client's requests while ordering everyone else's is visible).
    var loadEndTick: UInt64 { healTick + (options.sustainedLoad ? latencyBoundTicks : 0) }

    /// Runs until every request is accepted after the load ends, or until the last request's
    /// bound (and `livenessPhaseTicksMax`) passed; then reports late and never-accepted requests.
    func runLivenessPhase() {
        let deadline = max(healTick + options.livenessPhaseTicksMax, loadEndTick + latencyBoundTicks)
        while tick < deadline, tick < loadEndTick || !everyRequestAccepted, !overloaded { step() }
        guard !overloaded else { return }
        if let first = lateAcceptances.first {
            violations.append(InvariantViolation(
                .latency, replicas: [],
                detail: "\(lateAcceptances.count) request(s) accepted later than the bound of \(latencyBoundTicks) ticks (\(options.latencyBoundTimeouts) × viewChangeTimeoutTicksMax \(config.parameters.viewChangeTimeoutTicksMax)): \(first)"))
        }
        if !everyRequestAccepted { violations.append(livenessViolation()) }
    }

    /// Checks one acceptance against the bound.
    func checkLatency(_ accepted: SimClient.Accepted, client: SimClient) {
        guard phase == .liveness else { return }
        let start = max(accepted.submittedTick, healTick)
        guard accepted.acceptedTick > start + latencyBoundTicks else { return }
        lateAcceptances.append("c\(client.index) t\(accepted.request.timestamp) submitted at tick \(accepted.submittedTick), accepted at \(accepted.acceptedTick) (\(accepted.acceptedTick - start) ticks after its start \(start))")
    }

    // MARK: - Faults

    func scheduleFaults() {
        if options.partitions { schedulePartitions() }
        if options.crashes { scheduleCrash() }
    }

    func schedulePartitions() {
        if let end = partitionEndTick {
            guard tick >= end else { return }
            network.healPartitions()
            partitionEndTick = nil
            log("tick \(tick): partition healed")
            return
        }
        guard faultRandom.chance(1, in: max(1, options.partitionChanceOneIn)) else { return }
        let replicas = config.replicaIDs
        let primary = config.primary(of: mostCommonView())
        let links: [SimLink]
        let kind: String
        switch faultRandom.int(below: 4) {
        case 0:
            var shuffled = replicas
            faultRandom.shuffle(&shuffled)
            let cut = faultRandom.int(in: 1...max(1, replicas.count - 1))
            links = SimNetwork.split(Array(shuffled.prefix(cut)), Array(shuffled.dropFirst(cut)))
            kind = "split \(shuffled.prefix(cut).map(\.description)) | \(shuffled.dropFirst(cut).map(\.description))"
        case 1:
            let source = faultRandom.element(of: replicas) ?? primary
            links = SimNetwork.oneWay(from: [source], to: replicas)
            kind = "one-way: \(source) cannot send"
        case 2:
            links = SimNetwork.split([primary], replicas.filter { $0 != primary })
            kind = "primary \(primary) isolated"
        default:
            links = SimNetwork.oneWay(from: [primary], to: replicas)
            kind = "primary \(primary) cannot send (one-way)"
        }
        network.block(links)
        partitionEndTick = tick + faultRandom.uint64(in: 20...250)
        stats.partitionCount += 1
        trace.record(tick: tick, event: .partition, node: 0, bytes: [UInt8(links.count & 0xFF)])
        log("tick \(tick): partition \(kind) until \(partitionEndTick ?? 0)")
    }

    /// Up to max(1, f) replicas down at once — and, beside them, replicas that restarted and are
    /// still catching up (state transfer): while one is, crashes come four times as often, so
    /// "f down plus one recovering" is exercised. Crashed and Byzantine replicas together may
    /// exceed f here: liveness is only judged after healing, when every crashed replica restarts.
    func scheduleCrash() {
        let downCount = nodes.filter { !$0.isUp || $0.crashPending }.count
        let recovering = nodes.filter(isRecovering)
        let chanceOneIn = max(1, recovering.isEmpty ? options.crashChanceOneIn : options.crashChanceOneIn / 4)
        guard downCount < max(1, config.f), faultRandom.chance(1, in: chanceOneIn) else { return }
        let candidates = nodes.filter { $0.isHonest && $0.isUp && !$0.crashPending && !isRecovering($0) }
        guard let node = faultRandom.element(of: candidates) else { return }
        node.crashPending = true
        if !recovering.isEmpty, downCount + 1 == max(1, config.f) { stats.crashedBesideRecoveringCount += 1 }
    }

    /// Restarted after a crash and behind the most advanced honest replica.
    func isRecovering(_ node: SimNode<Core>) -> Bool {
        guard node.isHonest, node.crashCount > 0, let core = node.core else { return false }
        let highest = nodes.filter(\.isHonest).compactMap { $0.core?.lastExecuted }.max() ?? .genesis
        return core.lastExecuted < highest
    }

    /// Where a pending crash strikes one action list.
    enum CrashPoint {
        /// The API contract's weakest shell: actions performed one by one, the crash before
        /// action `index` (count = after all); if that is a persist, `keptRecords` of its
        /// records reached the disk and the next one was torn.
        case betweenActions(index: Int, keptRecords: Int?)
        /// SteleNode's group commit (CoreLoop.stage / makeDurable / release): every record of
        /// the list and every ledger append are written, then one WAL fsync and one ledger fsync
        /// run side by side, and only then is anything sent. A crash before both return keeps a
        /// prefix of the list's records (the next one torn, dropped when the log is opened) and,
        /// independently, a prefix of its ledger appends; nothing was sent.
        case beforeGroupSync(walRecordsKept: Int, ledgerWritesKept: Int)
        /// After the group's fsyncs: everything durable, the first `sendsDone` sends went out.
        case duringRelease(sendsDone: Int)
    }

    func crashPoint(for node: SimNode<Core>, actions: [Action]) -> CrashPoint? {
        guard node.crashPending else { return nil }
        switch faultRandom.int(below: 3) {
        case 0:
            let index = faultRandom.int(in: 0...actions.count)
            if index < actions.count, case .persist(let records) = actions[index], !records.isEmpty {
                return .betweenActions(index: index, keptRecords: faultRandom.int(below: records.count))
            }
            return .betweenActions(index: index, keptRecords: nil)
        case 1:
            let recordCount = actions.reduce(0) { count, action in
                if case .persist(let records) = action { return count + records.count }
                return count
            }
            let ledgerWriteCount = actions.filter(Simulation.isLedgerWrite).count
            return .beforeGroupSync(walRecordsKept: faultRandom.int(in: 0...recordCount), ledgerWritesKept: faultRandom.int(in: 0...ledgerWriteCount))
        default:
            return .duringRelease(sendsDone: faultRandom.int(in: 0...actions.filter { !Simulation.isDurable($0) }.count))
        }
    }

    static func isLedgerWrite(_ action: Action) -> Bool {
        switch action {
        case .commit, .commitCheckpoint: true
        default: false
        }
    }

    static func isDurable(_ action: Action) -> Bool {
        if case .persist = action { return true }
        return isLedgerWrite(action)
    }

    func crash(_ node: SimNode<Core>) {
        node.crashCore()
        node.crashPending = false
        node.crashCount += 1
        node.restartAtTick = tick + faultRandom.uint64(in: 5...120)
        stats.crashCount += 1
        trace.record(tick: tick, event: .crash, node: node.index, bytes: [])
        log("tick \(tick): \(node.replica) crashed (wal \(node.wal.count) records, ledger \(node.height.value))")
    }

    func restartDue() {
        for node in nodes where !node.isUp {
            guard let due = node.restartAtTick, tick >= due else { continue }
            restart(node)
        }
    }

    func restart(_ node: SimNode<Core>) {
        let recovery = node.recoveryState(config: config)
        let core = Core(config: config, signer: node.signer, recovery: recovery)
        node.restart(with: core)
        node.restartAtTick = nil
        stats.restartCount += 1
        trace.record(tick: tick, event: .restart, node: node.index, bytes: [])
        log("tick \(tick): \(node.replica) restarted in \(core.view) at \(core.lastExecuted) from \(recovery.records.count) records")
        checkRestart(node, core: core, recovery: recovery)
    }

    /// Invariant 9: view and last-executed never go backwards across a restart.
    func checkRestart(_ node: SimNode<Core>, core: Core, recovery: RecoveryState) {
        guard node.isHonest else { return }
        if let logged = node.highestLoggedView, core.view < logged {
            violations.append(InvariantViolation(.restartRegression, replicas: [node.replica], detail: "restarted in \(core.view) although its WAL records \(logged)"))
        }
        if core.lastExecuted < recovery.ledgerHead.height {
            violations.append(InvariantViolation(
                .restartRegression, replicas: [node.replica], height: recovery.ledgerHead.height,
                detail: "restarted with last-executed \(core.lastExecuted) below its ledger height \(recovery.ledgerHead.height)"))
        }
    }

    func mostCommonView() -> View {
        var counts = [View: Int]()
        for node in nodes where node.isHonest { if let view = node.core?.view { counts[view, default: 0] += 1 } }
        return counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }?.key ?? 0
    }

    // MARK: - Events into a core, actions out of it

    func handle(_ event: Event, at node: SimNode<Core>) {
        guard node.isUp else { return }
        if !node.isHonest, !adversary.admits(event, at: node.replica) { return }
        let actions = node.core!.handle(event)
        checkCoreInvariants(at: node)
        switch crashPoint(for: node, actions: actions) {
        case nil:
            for action in actions { perform(action, at: node) }
        case .betweenActions(let index, let keptRecords):
            crashBetweenActions(actions, at: node, index: index, keptRecords: keptRecords)
        case .beforeGroupSync(let walRecordsKept, let ledgerWritesKept):
            crashBeforeGroupSync(actions, at: node, walRecordsKept: walRecordsKept, ledgerWritesKept: ledgerWritesKept)
        case .duringRelease(let sendsDone):
            for action in actions where Simulation.isDurable(action) { perform(action, at: node) }
            for action in actions.filter({ !Simulation.isDurable($0) }).prefix(sendsDone) { perform(action, at: node) }
            crash(node)
        }
    }

    /// The core's structural invariants after every event, each broken rule reported once per
    /// replica (a bug in the core, whoever sent the message).
    func checkCoreInvariants(at node: SimNode<Core>) {
        let broken = node.core!.checkInvariants()
        guard !broken.isEmpty else { return }
        for violation in broken where reportedCoreInvariants.insert("\(node.index) \(violation.code)").inserted {
            violations.append(InvariantViolation(
                .coreInvariant, replicas: [node.replica], height: violation.sequence,
                detail: "tick \(tick): \(violation)"))
        }
    }

    func crashBetweenActions(_ actions: [Action], at node: SimNode<Core>, index: Int, keptRecords: Int?) {
        for action in actions.prefix(index) { perform(action, at: node) }
        if let keptRecords, index < actions.count, case .persist(let records) = actions[index] {
            node.appendToWAL(records.prefix(keptRecords))
            noteTornWrite(node)
        }
        crash(node)
    }

    /// The group commit's crash: a prefix of the list's WAL records and, independently, a
    /// prefix of its ledger appends survive (so the WAL may hold votes for a block the ledger
    /// lost, or the ledger a block whose records the WAL lost); nothing was sent.
    func crashBeforeGroupSync(_ actions: [Action], at node: SimNode<Core>, walRecordsKept: Int, ledgerWritesKept: Int) {
        let records = actions.flatMap { action -> [PersistRecord] in
            if case .persist(let records) = action { return records }
            return []
        }
        node.appendToWAL(records.prefix(walRecordsKept))
        if walRecordsKept < records.count { noteTornWrite(node) }
        for action in actions.filter(Simulation.isLedgerWrite).prefix(ledgerWritesKept) { perform(action, at: node) }
        if ledgerWritesKept < actions.filter(Simulation.isLedgerWrite).count { stats.ledgerWritesLostCount += 1 }
        stats.groupSyncCrashCount += 1
        crash(node)
    }

    func noteTornWrite(_ node: SimNode<Core>) {
        node.tornWriteCount += 1
        stats.tornWriteCount += 1
    }

    func perform(_ action: Action, at node: SimNode<Core>) {
        switch action {
        case .persist(let records):
            node.appendToWAL(records)
        case .send(let message, let target):
            send(message, from: node, to: [target])
        case .broadcast(let message):
            send(message, from: node, to: config.replicaIDs.filter { $0 != node.replica })
        case .commit(let block):
            commit(block, at: node)
        case .reply(let reply):
            sendReply(reply, from: node)
        case .commitCheckpoint(let certificate):
            node.appendCheckpoint(certificate)
        case .serveState(let request):
            serveState(request, at: node)
        }
    }

    func commit(_ block: CertifiedBlock, at node: SimNode<Core>) {
        if let problem = node.appendToLedger(block) {
            if node.isHonest { violations.append(InvariantViolation(.ledgerOrder, replicas: [node.replica], height: block.height, detail: problem)) }
            return
        }
        stats.commitCount += 1
        var writer = ByteWriter(capacity: 40)
        writer.write(block.height)
        writer.write(block.hash)
        trace.record(tick: tick, event: .commit, node: node.index, bytes: writer.bytes)
    }

    /// State transfer, serving side: the shared server over this node's ledger, with the
    /// cluster's limit (the simulator has no frames, so no byte budget).
    func serveState(_ request: StateRequest, at node: SimNode<Core>) {
        let blocksMax = config.parameters.stateTransferBlocksMax
        let response: StateResponse?
        do {
            response = try StateServer.response(to: request, from: node, blocksMax: blocksMax, signer: node.signer)
        } catch {
            preconditionFailure("an in-memory ledger cannot fail a read: \(error)")
        }
        guard let response else { return }
        send(.stateResponse(response), from: node, to: [request.replica])
    }

    // MARK: - Sending

    func send(_ message: Message, from node: SimNode<Core>, to targets: [ReplicaID]) {
        guard node.isHonest else {
            for send in adversary.intercept(message, from: node.replica, to: targets, now: tick) { put(send) }
            return
        }
        observeSigned(message, by: node.replica)
        for target in targets { sendToReplica(.message(message), from: node.replica, to: target) }
    }

    func put(_ send: AdversarySend) { sendToReplica(send.payload, from: send.from, to: send.to) }

    func sendToReplica(_ payload: SimPayload, from: ReplicaID, to target: ReplicaID) {
        for index in instances[from] ?? [] where nodes[index].instance == 0 { nodes[index].sentCount += 1 }
        for index in instances[target] ?? [] {
            network.send(payload, from: .replica(from), to: .node(index), replicaLink: SimLink(from: from, to: target), now: tick)
        }
    }

    func sendReply(_ reply: Reply, from node: SimNode<Core>) {
        guard let client = clientIndexByKey[reply.client] else { return }
        let payload = node.isHonest ? .message(.reply(reply)) : adversary.interceptReply(reply, from: node.replica)
        guard let payload else { return }
        network.send(payload, from: .replica(node.replica), to: .client(client), replicaLink: nil, now: tick)
    }

    func adversaryMoves() {
        for send in adversary.scheduledConspiracyVotes(now: tick) { put(send) }
        for node in nodes where !node.isHonest && node.instance == 0 {
            guard let view = node.core?.view else { continue }
            for send in adversary.tick(replica: node.replica, coreView: view, now: tick) { put(send) }
        }
    }

    // MARK: - Receiving

    func deliver(_ packet: SimPacket) {
        guard let message = decode(packet) else { return }
        switch packet.to {
        case .client(let index): deliverToClient(message, from: packet.from, client: clients[index])
        case .node(let index): deliverToNode(message, from: packet.from, node: nodes[index])
        }
    }

    /// Decodes raw bytes; encodes and decodes a sampled share of messages, checking the round trip.
    func decode(_ packet: SimPacket) -> Message? {
        switch packet.payload {
        case .bytes(let bytes):
            stats.garbledCount += 1
            guard let message = try? Message.decode(bytes) else {
                stats.undecodableCount += 1
                return nil
            }
            return message
        case .message(let message):
            guard codecRandom.chance(percent: options.codecSamplePercent) else { return message }
            stats.codecRoundTripCount += 1
            let decoded: Message
            do {
                decoded = try Message.decode(message.encode())
            } catch {
                violations.append(InvariantViolation(.codec, replicas: senderReplicas(packet), detail: "\(message.tag) does not decode: \(error)"))
                return nil
            }
            if decoded != message {
                violations.append(InvariantViolation(.codec, replicas: senderReplicas(packet), detail: "\(message.tag) changed in an encode/decode round trip"))
                return nil
            }
            return decoded
        }
    }

    func senderReplicas(_ packet: SimPacket) -> [ReplicaID] {
        if case .replica(let id) = packet.from { return [id] }
        return []
    }

    func deliverToNode(_ message: Message, from source: SimAddress, node: SimNode<Core>) {
        guard node.isUp else { return }
        switch source {
        case .client:
            guard case .request(let request) = message, cache.isAuthentic(request) else {
                stats.rejectedCount += 1
                return
            }
            stats.deliveredCount += 1
            trace.record(tick: tick, event: .clientRequest, node: node.index, bytes: request.signature.bytes)
            handle(.clientRequest(request), at: node)
        case .replica(let sender):
            guard cache.isAuthentic(message) else {
                stats.rejectedCount += 1
                trace.record(tick: tick, event: .rejected, node: node.index, bytes: message.signature.bytes)
                return
            }
            stats.deliveredCount += 1
            trace.record(tick: tick, event: .message, node: node.index, bytes: [message.tag.rawValue, UInt8(truncatingIfNeeded: sender.value)] + message.signature.bytes)
            handle(.message(message, from: sender), at: node)
        }
    }

    func deliverToClient(_ message: Message, from source: SimAddress, client: SimClient) {
        guard case .reply(let reply) = message, case .replica(let sender) = source, reply.replica == sender,
              cache.isAuthentic(message) else {
            stats.rejectedCount += 1
            return
        }
        for accepted in client.receive(reply, now: tick) {
            stats.acceptedCount += 1
            var writer = ByteWriter(capacity: 48)
            writer.write(accepted.request.timestamp)
            writer.write(accepted.result.height)
            writer.write(accepted.result.blockHash)
            trace.record(tick: tick, event: .accepted, node: client.index, bytes: writer.bytes)
            log("tick \(tick): c\(client.index) accepted t\(accepted.request.timestamp) at height \(accepted.result.height.value)")
            checkLatency(accepted, client: client)
        }
    }

    // MARK: - Clients

    func clientMoves() {
        for client in clients {
            for send in client.retransmissions(now: tick) { route(send, from: client) }
            guard phase == .safety, client.submittedCount < options.requestsPerClient, client.canSubmit else { continue }
            // Spread submissions over the first two thirds of the safety phase.
            let spreadTicks = max(1, Int(options.safetyPhaseTicks * 2 / 3))
            if clientRandom.chance(options.requestsPerClient, in: spreadTicks) { submit(client) }
        }
        if phase == .liveness, tick < loadEndTick, (tick - healTick) % loadPeriodTicks == 0 { submitLoad() }
    }

    /// The sustained load's period: one request every quarter of the base view-change timeout.
    /// Other requests then execute more often than any backup's timer could fire, which is what
    /// a primary that censors one client relies on (a timer restarted by any execution would
    /// never fire); a fixed period keeps that true at every gap, not only on average.
    var loadPeriodTicks: UInt64 { max(1, config.parameters.viewChangeTimeoutTicks / 4) }

    /// One request of the sustained load, from the next client in turn that has room (a
    /// client whose requests are censored fills up and is skipped).
    func submitLoad() {
        for offset in 0..<clients.count {
            let index = (loadTurn + offset) % clients.count
            guard clients[index].canSubmit else { continue }
            submit(clients[index])
            loadTurn = (index + 1) % clients.count
            return
        }
    }

    func submit(_ client: SimClient) {
        let payload = clientRandom.bytes(clientRandom.int(in: 1...32))
        route(client.submit(payload: payload, now: tick), from: client)
        stats.submittedCount += 1
    }

    func route(_ send: SimClient.Send, from client: SimClient) {
        switch send {
        case .primary(let request, let replica):
            sendFromClient(request, from: client, to: replica)
        case .everyone(let request):
            for replica in config.replicaIDs { sendFromClient(request, from: client, to: replica) }
        }
    }

    func sendFromClient(_ request: Request, from client: SimClient, to replica: ReplicaID) {
        for index in instances[replica] ?? [] {
            network.send(.message(.request(request)), from: .client(client.index), to: .node(index), replicaLink: nil, now: tick)
        }
    }

    // MARK: - Invariants checked as the run goes

    struct SignedSlot: Hashable {
        let replica: ReplicaID
        let tag: MessageTag
        let view: View
        let sequence: SequenceNumber
    }

    /// Invariant 4 (and its checkpoint analogue): an honest replica never signs two digests for
    /// one (kind, view, sequence) — across crashes and restarts too.
    func observeSigned(_ message: Message, by replica: ReplicaID) {
        switch message {
        case .prePrepare(let m): observe(SignedSlot(replica: replica, tag: .prePrepare, view: m.view, sequence: m.sequence), m.digest)
        case .prepare(let m), .commit(let m): observe(SignedSlot(replica: replica, tag: m.kind.tag, view: m.view, sequence: m.sequence), m.digest)
        case .checkpoint(let m): observe(SignedSlot(replica: replica, tag: .checkpoint, view: 0, sequence: m.sequence), m.stateDigest)
        case .newView(let m):
            for prePrepare in m.prePrepares where prePrepare.primary == replica {
                observe(SignedSlot(replica: replica, tag: .prePrepare, view: prePrepare.view, sequence: prePrepare.sequence), prePrepare.digest)
            }
        default: break
        }
    }

    func observe(_ slot: SignedSlot, _ digest: Digest) {
        if let earlier = signedDigests[slot] {
            guard earlier != digest, reportedEquivocators.insert(slot.replica).inserted else { return }
            violations.append(InvariantViolation(
                .honestEquivocation, replicas: [slot.replica], height: slot.sequence,
                detail: "\(slot.tag) for \(slot.view) \(slot.sequence) signed for \(earlier) and later for \(digest)"))
            return
        }
        guard signedDigests.count < Simulation.signedSlotsMax else { return }
        signedDigests[slot] = digest
    }

    // MARK: - After the run

    func checkSafety() {
        let checker = SafetyChecker(config: config)
        let honest = honestNodes
        let logs = Dictionary(uniqueKeysWithValues: honest.map { ($0.replica, $0.ledger) })
        let checkpoints = Dictionary(uniqueKeysWithValues: honest.map { ($0.replica, $0.checkpoints) })
        violations += checker.check(logs: logs, checkpoints: checkpoints, cache: &cache)
        violations += checkAcceptedResults(logs: logs)
    }

    var honestNodes: [SimNode<Core>] { nodes.filter(\.isHonest) }

    /// A result a client accepted must be the honest ledgers' block at that height, holding the request.
    func checkAcceptedResults(logs: [ReplicaID: [CertifiedBlock]]) -> [InvariantViolation] {
        for client in clients {
            for timestamp in client.accepted.keys.sorted() {
                guard let accepted = client.accepted[timestamp] else { continue }
                if let problem = contradiction(accepted, logs: logs) { return [problem] }
            }
        }
        return []
    }

    func contradiction(_ accepted: SimClient.Accepted, logs: [ReplicaID: [CertifiedBlock]]) -> InvariantViolation? {
        let height = accepted.result.height.value
        guard height >= 1 else {
            return InvariantViolation(.wrongResult, replicas: [], detail: "a client accepted height 0 for timestamp \(accepted.request.timestamp)")
        }
        for replica in logs.keys.sorted() {
            guard let log = logs[replica], height <= UInt64(log.count) else { continue }
            let block = log[Int(height) - 1]
            let holdsRequest = block.batch.contains { $0.client == accepted.request.client && $0.timestamp == accepted.request.timestamp }
            if block.hash != accepted.result.blockHash || !holdsRequest {
                return InvariantViolation(
                    .wrongResult, replicas: [replica], height: accepted.result.height,
                    detail: "a client accepted block \(accepted.result.blockHash) for timestamp \(accepted.request.timestamp); \(replica) holds \(block.hash) there\(holdsRequest ? "" : " without that request")")
            }
        }
        return nil
    }

    func livenessViolation() -> InvariantViolation {
        var stuck = [String]()
        for client in clients {
            for timestamp in client.pending.keys.sorted() {
                guard let pending = client.pending[timestamp] else { continue }
                stuck.append("c\(client.index) t\(timestamp) (submitted at tick \(pending.submittedTick), \(pending.retransmissionCount) retransmissions, replies from \(pending.replies.keys.sorted().map(\.description)))")
            }
        }
        let states = honestNodes.map { node -> String in
            guard let core = node.core else { return "\(node.replica) down" }
            return "\(node.replica) \(core.view)\(core.isInViewChange ? " (changing)" : "") executed \(core.lastExecuted.value) stable \(core.stableCheckpoint.value) ledger \(node.height.value)"
        }
        let stuckReplicas = honestNodes.filter { node in node.core?.isInViewChange ?? true }.map(\.replica)
        return InvariantViolation(
            .liveness, replicas: stuckReplicas,
            detail: "\(stuck.count) request(s) not accepted by tick \(tick), \(tick - healTick) ticks after healing at \(healTick) (latency bound \(latencyBoundTicks)): \(stuck.prefix(6).joined(separator: "; ")); replicas: \(states.joined(separator: "; "))")
    }

    func report() -> SimulationReport {
        let honest = honestNodes
        let heights = honest.map(\.height.value)
        let requestCount = honest.max { $0.ledger.count < $1.ledger.count }?.ledger.reduce(0) { $0 + $1.batch.count } ?? 0
        let exported = options.checksLiveness ? honest : nodes.filter { $0.instance == 0 }
        return SimulationReport(
            options: options, config: config, byzantine: adversary.strategies, traceHash: trace.finish(), ticks: tick,
            violations: violations, livenessChecked: options.checksLiveness,
            submittedCount: clients.reduce(0) { $0 + $1.submittedCount }, acceptedCount: clients.reduce(0) { $0 + $1.acceptedCount },
            committedHeightMax: heights.max() ?? 0, committedRequestCount: requestCount,
            ledgers: Dictionary(uniqueKeysWithValues: exported.map { ($0.replica, $0.ledger) }),
            checkpoints: Dictionary(uniqueKeysWithValues: exported.map { ($0.replica, $0.checkpoints) }),
            stats: stats, verificationCount: cache.verificationCount, adversaryMoves: adversary.moveCounts)
    }

    func describeByzantine() -> String {
        let entries = adversary.strategies.keys.sorted().map { "\($0):\(adversary.strategies[$0]?.rawValue ?? "?")" }
        return entries.isEmpty ? "none" : entries.joined(separator: ",")
    }

    func log(_ line: @autoclosure () -> String) {
        traceSink?(line())
    }
}

/// Counters of one run.
public struct SimulationStats: Sendable, Equatable {
    public var deliveredCount = 0
    public var rejectedCount = 0
    public var garbledCount = 0
    public var undecodableCount = 0
    public var codecRoundTripCount = 0
    public var commitCount = 0
    public var crashCount = 0
    public var restartCount = 0
    public var tornWriteCount = 0
    /// Crashes that struck before a group commit's fsyncs returned (SteleNode's disk model).
    public var groupSyncCrashCount = 0
    /// Of those, crashes that lost at least one ledger append of the group.
    public var ledgerWritesLostCount = 0
    /// Crashes that brought the down count to max(1, f) while another replica was recovering.
    public var crashedBesideRecoveringCount = 0
    public var partitionCount = 0
    public var submittedCount = 0
    public var acceptedCount = 0
}

/// What a run found and produced.
public struct SimulationReport: Sendable {
    public let options: SimulationOptions
    public let config: ClusterConfig
    public let byzantine: [ReplicaID: ByzantineStrategy]
    /// SHA-256 over everything that happened, in order: equal seeds give equal hashes.
    public let traceHash: Digest
    public let ticks: UInt64
    public let violations: [InvariantViolation]
    public let livenessChecked: Bool
    public let submittedCount: Int
    public let acceptedCount: Int
    public let committedHeightMax: UInt64
    public let committedRequestCount: Int
    /// Honest replicas' ledgers (every replica's when K > f, so a fork is visible).
    public let ledgers: [ReplicaID: [CertifiedBlock]]
    public let checkpoints: [ReplicaID: [CheckpointCertificate]]
    public let stats: SimulationStats
    public let verificationCount: Int
    /// How often each kind of Byzantine misbehaviour happened.
    public let adversaryMoves: [String: Int]

    public var passed: Bool { violations.isEmpty }
    public var forks: [InvariantViolation] { violations.filter { $0.code == .fork } }
}
