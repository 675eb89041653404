import ContainerdAPI
import Foundation
import Logging
import Sockets
import SwiftProtobuf
import SystemCalls
import TTRPC

/// Sends task events to containerd (`Events/Forward` at TTRPC_ADDRESS) one at a time, in the order
/// they were published, from one thread; a failed send is retried on a fresh connection before the
/// event is given up. Without an address (CRI-O) events are only logged.
final class EventForwarder: @unchecked Sendable {
    static let service = "containerd.services.events.ttrpc.v1.Events"
    let address: String?
    let namespace: String
    let logger: Logger
    private let state = Condition()
    private var queue: [Containerd_Services_Events_Ttrpc_V1_Envelope] = []  // guarded by state
    private var sending = false  // guarded by state
    private var client: TTRPCClient?  // only the sender thread touches it

    init(address: String?, namespace: String, logger: Logger) {
        self.address = address.flatMap { $0.isEmpty ? nil : $0 }
        self.namespace = namespace
        self.logger = logger
        if self.address != nil {
            do {
                try startDetachedThread { [self] in run() }
            } catch {
                logger.error("cannot start the event sender: \(error); events will not reach containerd")
            }
        }
    }

    func publish(_ topic: String, _ event: some SwiftProtobuf.Message) {
        logger.debug("event", metadata: ["topic": "\(topic)"])
        guard address != nil else { return }
        let envelope: Containerd_Services_Events_Ttrpc_V1_Envelope
        do {
            let any = try TypeURL.pack(event)
            envelope = .with {
                $0.timestamp = Google_Protobuf_Timestamp(date: Date())
                $0.namespace = namespace
                $0.topic = topic
                $0.event = any
            }
        } catch {
            logger.error("cannot encode the \(topic) event: \(error)")
            return
        }
        state.withLock {
            queue.append(envelope)
            state.broadcast()
        }
    }

    /// Waits until every published event was sent (or given up), at most until the deadline.
    @discardableResult
    func flush(until deadline: Deadline) -> Bool {
        state.withLock {
            while !queue.isEmpty || sending {
                if !state.wait(until: deadline) { return false }
            }
            return true
        }
    }

    private func run() {
        while true {
            let next = state.withLock { () -> Containerd_Services_Events_Ttrpc_V1_Envelope in
                while queue.isEmpty { _ = state.wait(until: nil) }
                sending = true
                return queue.removeFirst()
            }
            send(next)
            state.withLock {
                sending = false
                state.broadcast()
            }
        }
    }

    private func send(_ envelope: Containerd_Services_Events_Ttrpc_V1_Envelope) {
        let request = Containerd_Services_Events_Ttrpc_V1_ForwardRequest.with { $0.envelope = envelope }
        var delay = 0.05
        for attempt in 1...6 {
            do {
                let client = try connected()
                _ = try client.call(Self.service, "Forward", request, returning: Google_Protobuf_Empty.self,
                                    metadata: [("containerd-namespace-ttrpc", namespace)], timeout: 5)
                return
            } catch {
                client?.close()
                client = nil
                if attempt == 6 {
                    logger.error("event \(envelope.topic) not delivered to containerd at \(address ?? ""): \(error)")
                    return
                }
                sleep(seconds: delay)
                delay = min(delay * 2, 1)
            }
        }
    }

    private func connected() throws -> TTRPCClient {
        if let client, !client.isClosed { return client }
        let fd = try StreamSocket.connectUnix(path: address!, until: .after(seconds: 5))
        let c = try TTRPCClient(stream: DescriptorStream(fd), logger: logger)
        client = c
        return c
    }
}
