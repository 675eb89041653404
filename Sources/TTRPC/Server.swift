import Logging
import StatusCodes
import SwiftProtobuf
import SystemCalls

/// What a handler knows about the request it serves.
public struct TTRPCContext: Sendable {
    public let service: String
    public let method: String
    /// Request metadata; a key sent several times keeps every value, in order.
    public let metadata: [String: [String]]
    /// The caller's deadline, when it set one. Handlers that block should honour it.
    public let deadline: Deadline?
    /// Work to do once the response is on the wire (e.g. power off after acknowledging Shutdown).
    public let afterResponse = AfterResponse()
}

/// Actions a handler queues to run after its response was sent (or failed to send).
public final class AfterResponse: @unchecked Sendable {
    private let lock = NSLockLite()
    private var actions: [@Sendable () -> Void] = []

    public func add(_ action: @escaping @Sendable () -> Void) { lock.withLock { actions.append(action) } }

    func run() {
        for action in lock.withLock({ actions }) { action() }
    }
}

public typealias TTRPCHandler = @Sendable (TTRPCContext, [UInt8]) throws -> [UInt8]

/// The methods of one service, by the name the wire carries (e.g. "containerd.task.v2.Task").
public struct TTRPCService: Sendable {
    public let name: String
    var methods: [String: TTRPCHandler] = [:]

    public init(_ name: String) { self.name = name }

    public mutating func raw(_ method: String, _ handler: @escaping TTRPCHandler) {
        methods[method] = handler
    }

    /// A unary method with protobuf request and response types. A payload that does not decode is
    /// answered with InvalidArgument before the handler runs.
    public mutating func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ method: String, _ body: @escaping @Sendable (TTRPCContext, Request) throws -> Response
    ) {
        let service = name
        methods[method] = { context, payload in
            let request: Request
            do {
                request = try Request(serializedBytes: payload)
            } catch {
                throw TTRPCError(.invalidArgument, "\(service)/\(method): request does not decode as \(Request.protoMessageName): \(error)")
            }
            return try body(context, request).serializedBytes()
        }
    }
}

/// Serves registered services on connections handed to `serve`. Each request runs on its own thread,
/// so a slow method (a process wait) never holds up the others; responses go back as they finish.
public final class TTRPCServer: Sendable {
    let services: [String: TTRPCService]
    let logger: Logger
    /// In-flight requests per connection; more are answered ResourceExhausted at once.
    let maxConcurrentRequests: Int

    public init(services: [TTRPCService], logger: Logger, maxConcurrentRequests: Int = 128) {
        self.services = Dictionary(services.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
        self.logger = logger
        self.maxConcurrentRequests = maxConcurrentRequests
    }

    /// Serves one connection until the peer closes it or breaks the framing; then closes the stream.
    public func serve(_ stream: any ByteStream) {
        let reader = FrameReader(stream)
        let writer = FrameWriter(stream)
        let active = ActiveCount()
        var lastStreamID: UInt32 = 0
        defer { stream.close() }

        func answer(_ id: UInt32, _ error: TTRPCError) {
            logger.debug("ttrpc request refused", metadata: ["stream": "\(id)", "code": "\(error.code)", "error": "\(error.message)"])
            send(writer, id, .failure(error))
        }

        while true {
            let frame: Frame?
            do {
                frame = try reader.next()
            } catch {
                logger.warning("ttrpc connection closed: \(error.message)")
                return
            }
            guard let frame else { return }
            switch frame {
            case .oversized(let header):
                answer(header.streamID, TTRPCError(.resourceExhausted,
                    "message length \(header.length) exceeds the maximum message size of \(MessageHeader.maxPayload)"))
            case .message(let header, let payload):
                // Data frames and unknown types belong to streaming methods, which no service here has.
                guard header.kind == .request else { continue }
                let id = header.streamID
                guard id % 2 == 1 else {
                    answer(id, TTRPCError(.invalidArgument, "stream id \(id) is even: client streams must be odd"))
                    continue
                }
                guard id > lastStreamID else {
                    answer(id, TTRPCError(.invalidArgument, "stream id \(id) does not increase (last was \(lastStreamID))"))
                    continue
                }
                lastStreamID = id
                let request: Ttrpc_Request
                do {
                    request = try Ttrpc_Request(serializedBytes: payload)
                } catch {
                    answer(id, TTRPCError(.invalidArgument, "request does not decode: \(error)"))
                    continue
                }
                guard active.tryEnter(limit: maxConcurrentRequests) else {
                    answer(id, TTRPCError(.resourceExhausted, "more than \(maxConcurrentRequests) requests in flight on this connection"))
                    continue
                }
                do {
                    try startDetachedThread { [self] in
                        defer { active.leave() }
                        let (result, context) = dispatch(request)
                        send(writer, id, result)
                        context?.afterResponse.run()
                    }
                } catch {
                    active.leave()
                    answer(id, TTRPCError(.resourceExhausted, "cannot start a thread for the request: \(error)"))
                }
            }
        }
    }

    func dispatch(_ request: Ttrpc_Request) -> (Result<[UInt8], TTRPCError>, TTRPCContext?) {
        guard let service = services[request.service] else {
            return (.failure(TTRPCError(.unimplemented, "service \(request.service)")), nil)
        }
        guard let handler = service.methods[request.method] else {
            return (.failure(TTRPCError(.unimplemented, "method \(request.method)")), nil)
        }
        var metadata: [String: [String]] = [:]
        for pair in request.metadata { metadata[pair.key, default: []].append(pair.value) }
        let deadline = request.timeoutNano > 0
            ? Deadline(nanoseconds: Deadline.monotonicNanoseconds() &+ UInt64(request.timeoutNano)) : nil
        let context = TTRPCContext(service: request.service, method: request.method, metadata: metadata, deadline: deadline)
        do {
            return (.success(try handler(context, request.payload.bytes)), context)
        } catch {
            let status = TTRPCError.status(for: error)
            logger.debug("ttrpc \(request.service)/\(request.method) failed", metadata: ["code": "\(status.code)", "error": "\(status.message)"])
            return (.failure(status), context)
        }
    }

    func send(_ writer: FrameWriter, _ id: UInt32, _ result: Result<[UInt8], TTRPCError>) {
        var response = Ttrpc_Response()
        switch result {
        case .success(let payload):
            response.status = Ttrpc_Status()
            response.payload = payload.data
        case .failure(let error):
            response.status = .with {
                $0.code = error.code.rawValue
                $0.message = error.message
            }
        }
        guard let bytes: [UInt8] = try? response.serializedBytes() else {
            logger.error("ttrpc response does not encode", metadata: ["stream": "\(id)"])
            return
        }
        let outcome = Result { () throws(TTRPCError) in try writer.send(streamID: id, kind: .response, payload: bytes) }
        guard case .failure(let error) = outcome else { return }
        if error.code == .resourceExhausted, case .success = result {
            // The handler's answer is too big for one frame: tell the caller rather than go silent.
            send(writer, id, .failure(error))
        } else {
            logger.debug("ttrpc response not sent", metadata: ["stream": "\(id)", "error": "\(error.message)"])
        }
    }
}

/// Requests running on one connection.
final class ActiveCount: @unchecked Sendable {
    private let lock = NSLockLite()
    private var count = 0

    func tryEnter(limit: Int) -> Bool {
        lock.withLock {
            guard count < limit else { return false }
            count += 1
            return true
        }
    }

    func leave() { lock.withLock { count -= 1 } }
}
