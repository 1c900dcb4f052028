import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// The replica's metrics (swift-metrics; exported in Prometheus text format when the process
/// bootstraps `PrometheusMetrics`).
struct NodeMetrics: Sendable {
    let blocksCommitted = Counter(label: "stele_blocks_committed_total")
    let transactionsCommitted = Counter(label: "stele_transactions_committed_total")
    let viewChanges = Counter(label: "stele_view_changes_total")
    let view = Gauge(label: "stele_view")
    let height = Gauge(label: "stele_height")
    let requestsDropped = Counter(label: "stele_requests_rejected_total")
    /// Client requests shed before signature verification, by reason.
    let requestsRateLimited = Counter(label: "stele_requests_shed_total",
                                      dimensions: [("reason", ShedReason.rate.rawValue)])
    let requestsDuplicate = Counter(label: "stele_requests_shed_total",
                                    dimensions: [("reason", ShedReason.duplicate.rawValue)])
    let requestsBadSignature = Counter(label: "stele_requests_shed_total",
                                       dimensions: [("reason", ShedReason.signature.rawValue)])
    /// Connections closed or refused by a defence (bad signatures, handshake backlog, a newer
    /// connection from the same replica).
    let connectionsShed = Counter(label: "stele_connections_shed_total")
    /// Messages not sent because they would not fit one frame (PeerLinks.fitsOneFrame).
    let framesOversize = Counter(label: "stele_frames_oversize_dropped_total")
    /// From a client request's arrival at this replica to its reply.
    let requestLatency = Metrics.Timer(label: "stele_request_latency_seconds")
    /// Events handled per turn of the node loop (the group-commit size).
    let groupSize = Recorder(label: "stele_events_per_group")
}

/// Bootstraps swift-metrics with a Prometheus registry and serves it at
/// `http://HOST:PORT/metrics` (text format 0.0.4).
public enum PrometheusMetrics {
    public static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }

    /// Serves GET /metrics until the task is cancelled.
    public static func serve(registry: PrometheusCollectorRegistry, host: String, port: Int) async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return AcceptedChannel(try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel))
                }
            }
        try await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { connections in
                for try await connection in connections {
                    group.addTask {
                        try? await connection.take().executeThenClose { inbound, outbound in
                            for try await part in inbound {
                                guard case .head(let request) = part else { continue }
                                let found = request.uri == "/metrics" || request.uri.hasPrefix("/metrics?")
                                let body = found ? registry.emitToBuffer() : Array("not found; try /metrics\n".utf8)
                                var headers = HTTPHeaders()
                                headers.add(name: "Content-Type", value: found ? "text/plain; version=0.0.4" : "text/plain")
                                headers.add(name: "Content-Length", value: "\(body.count)")
                                try await outbound.write(.head(HTTPResponseHead(version: request.version, status: found ? .ok : .notFound, headers: headers)))
                                try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
                                try await outbound.write(.end(nil))
                            }
                        }
                    }
                }
            }
        }
    }
}
