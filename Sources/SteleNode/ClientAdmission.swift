import Foundation
import Logging
import NIOCore
import PBFT
import SteleCore
import SteleCrypto
import Synchronization

/// Client connections after their handshake: who is connected (one connection per client key,
/// at most `clientConnectionsMax`), what each may put in front of the signature verifier and
/// the core (`RequestGate`), and the mailbox the core's replies to a client go to.
final class ClientAdmission: Sendable {
    private let context: NodeContext
    private let verifier: SignatureVerifier
    private let inbox: Mailbox<Event>
    private let shed: ShedTally
    /// Answers a client's status request.
    private let status: StatusBoard
    private let clients = Mutex<[PublicKey: Mailbox<Frame>]>([:])

    init(context: NodeContext, verifier: SignatureVerifier, inbox: Mailbox<Event>, shed: ShedTally,
         status: StatusBoard) {
        self.context = context
        self.verifier = verifier
        self.inbox = inbox
        self.shed = shed
        self.status = status
    }

    /// Where replies to `client` go, if it is connected.
    func mailbox(of client: PublicKey) -> Mailbox<Frame>? {
        clients.withLock { $0[client] }
    }

    /// Serves one client connection until it closes: requests in, replies and status out.
    func serve(_ key: PublicKey, channel: any Channel,
               iterator: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator,
               outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        let mailbox = Mailbox<Frame>(capacity: context.settings.clientQueueFramesMax)
        guard register(key, mailbox: mailbox) else {
            try? await outbound.write(.refusal("too many client connections"))
            return
        }
        defer {
            clients.withLock { clients in
                if clients[key] === mailbox { clients[key] = nil }
            }
            mailbox.close()
        }
        // Replies are written from the event loop itself (`FrameDrain`).
        try await FrameDrain.install(on: channel, draining: mailbox)
        defer { mailbox.setWakeHandler(nil) }
        var gate = RequestGate(limits: context.settings.requestLimits)
        while let frame = try await iterator.next() {
            switch frame {
            case .message(.request(let request)):
                guard request.client == key else {
                    throw ConnectionError(description: "client sent a request signed by another key")
                }
                try await admit(request, gate: &gate, outbound: outbound)
            case .statusRequest:
                let json = (try? JSONEncoder().encode(status.current)).map { Array($0) } ?? []
                mailbox.post(.statusResponse(json))
            default:
                throw ConnectionError(description: "client sent a \(frame.kind) frame")
            }
        }
    }

    /// Makes `mailbox` the one of client `key`, closing an older connection's; false when the
    /// replica holds `clientConnectionsMax` other clients already.
    private func register(_ key: PublicKey, mailbox: Mailbox<Frame>) -> Bool {
        clients.withLock { clients -> Bool in
            guard clients.count < context.settings.clientConnectionsMax || clients[key] != nil else { return false }
            clients[key]?.close()
            clients[key] = mailbox
            return true
        }
    }

    /// One request of the connection, through the gate (cheapest check first), the signature
    /// check if the gate asks for it, and into the core's inbox. Throws, after a refusal, when
    /// the connection sent too many bad signatures.
    private func admit(_ request: Request, gate: inout RequestGate,
                       outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        let now = ContinuousClock.now
        switch gate.admit(request, now: now) {
        case .drop(.rateLimited):
            shed.record(.rate)
            return
        case .drop(.duplicate):
            shed.record(.duplicate)
            return
        case .forwardVerified:
            inbox.post(.clientRequest(request))
            return
        case .verify:
            break
        }
        guard verifier.verify(request) else {
            shed.record(.signature)
            context.logger.debug("dropping request with a bad signature", metadata: ["client": "\(request.client)"])
            do {
                try gate.badSignature()
            } catch {
                shed.record(.connection)
                try? await outbound.write(.refusal("\(error)"))
                throw ConnectionError(description: "client \(request.client): \(error)")
            }
            return
        }
        gate.verified(request, now: now)
        inbox.post(.clientRequest(request))
    }
}
