import Logging
import StatusCodes
import SwiftProtobuf
import SystemCalls

/// A ttrpc client on one connection. Calls may come from many threads at once; each waits for its
/// own response, which may arrive in any order. A reader thread owns the receiving half.
public final class TTRPCClient: @unchecked Sendable {
    private let stream: any ByteStream
    private let writer: FrameWriter
    private let logger: Logger
    // Guards pending, nextStreamID and closedReason; waiters sleep on it.
    private let state = Condition()
    private var pending: [UInt32: Result<[UInt8], TTRPCError>?] = [:]
    private var nextStreamID: UInt32 = 1
    private var closedReason: TTRPCError?
    // Stream ids go on the wire in increasing order: allocation and send happen under one lock.
    private let sendLock = NSLockLite()

    public init(stream: any ByteStream, logger: Logger) throws(TTRPCError) {
        self.stream = stream
        self.writer = FrameWriter(stream)
        self.logger = logger
        do {
            try startDetachedThread { [self] in receiveLoop() }
        } catch {
            throw TTRPCError(.resourceExhausted, "cannot start the ttrpc reader thread: \(error)")
        }
    }

    /// True once the connection is gone; every later call fails with Unavailable.
    public var isClosed: Bool { state.withLock { closedReason != nil } }

    /// Closes the connection; calls in flight fail with Unavailable.
    public func close() {
        stream.close()
        fail(with: TTRPCError(.unavailable, "ttrpc client closed"))
    }

    /// One unary call with raw payloads. `timeout` nil waits until the response or the end of the
    /// connection (a process wait can take as long as the process lives); otherwise it is also sent
    /// to the server as the request's deadline.
    public func call(service: String, method: String, payload: [UInt8],
                     metadata: [(String, String)] = [], timeout: Double?) throws(TTRPCError) -> [UInt8] {
        var request = Ttrpc_Request()
        request.service = service
        request.method = method
        request.payload = payload.data
        request.metadata = metadata.map { pair in .with { $0.key = pair.0; $0.value = pair.1 } }
        if let timeout { request.timeoutNano = Int64(max(timeout, 0.000_001) * 1e9) }
        let deadline = timeout.map { Deadline.after(seconds: $0) }
        let bytes: [UInt8]
        do {
            bytes = try request.serializedBytes()
        } catch {
            throw TTRPCError(.internal, "cannot encode request: \(error)")
        }

        let id = try send(bytes)
        return try awaitResponse(id, until: deadline, describing: "\(service)/\(method)", timeout: timeout)
    }

    /// Allocates the next stream id and writes the request, under one lock.
    private func send(_ bytes: [UInt8]) throws(TTRPCError) -> UInt32 {
        sendLock.lock()
        defer { sendLock.unlock() }
        let id: UInt32 = try state.withLock { () throws(TTRPCError) -> UInt32 in
            if let closedReason { throw closedReason }
            guard nextStreamID < UInt32.max - 1 else {
                throw TTRPCError(.resourceExhausted, "ttrpc stream ids exhausted on this connection")
            }
            let id = nextStreamID
            nextStreamID += 2
            pending[id] = .some(nil)
            return id
        }
        do {
            try writer.send(streamID: id, kind: .request, payload: bytes)
        } catch {
            state.withLock { _ = pending.removeValue(forKey: id) }
            throw error
        }
        return id
    }

    private func awaitResponse(_ id: UInt32, until deadline: Deadline?, describing call: String,
                               timeout: Double?) throws(TTRPCError) -> [UInt8] {
        state.lock()
        defer { state.unlock() }
        while true {
            if case .some(.some(let result)) = pending[id] {
                pending.removeValue(forKey: id)
                return try result.get()
            }
            if let closedReason {
                pending.removeValue(forKey: id)
                throw closedReason
            }
            if !state.wait(until: deadline) {
                pending.removeValue(forKey: id)
                throw TTRPCError(.deadlineExceeded, "\(call): no response within \(timeout ?? 0) s")
            }
        }
    }

    /// One unary call with protobuf messages.
    public func call<Response: SwiftProtobuf.Message>(
        _ service: String, _ method: String, _ request: some SwiftProtobuf.Message,
        returning: Response.Type = Response.self, metadata: [(String, String)] = [], timeout: Double?
    ) throws(TTRPCError) -> Response {
        let payload: [UInt8]
        do {
            payload = try request.serializedBytes()
        } catch {
            throw TTRPCError(.internal, "cannot encode \(type(of: request).protoMessageName): \(error)")
        }
        let answer = try call(service: service, method: method, payload: payload, metadata: metadata, timeout: timeout)
        do {
            return try Response(serializedBytes: answer)
        } catch {
            throw TTRPCError(.internal, "\(service)/\(method): response does not decode as \(Response.protoMessageName): \(error)")
        }
    }

    private func complete(_ id: UInt32, _ result: Result<[UInt8], TTRPCError>) {
        state.withLock {
            guard case .some(.none) = pending[id] else {
                logger.debug("ttrpc response for no waiting call", metadata: ["stream": "\(id)"])
                return
            }
            pending[id] = .some(result)
            state.broadcast()
        }
    }

    private func fail(with reason: TTRPCError) {
        state.withLock {
            if closedReason == nil { closedReason = reason }
            state.broadcast()
        }
    }

    private func receiveLoop() {
        let reader = FrameReader(stream)
        while true {
            let frame: Frame?
            do {
                frame = try reader.next()
            } catch {
                // A peer going away (Unavailable) is routine, e.g. after a shutdown; anything else is a fault.
                if error.code == .unavailable {
                    logger.debug("ttrpc client connection ended: \(error.message)")
                } else {
                    logger.warning("ttrpc client connection failed: \(error.message)")
                }
                fail(with: TTRPCError(.unavailable, "ttrpc connection lost: \(error.message)"))
                stream.close()
                return
            }
            guard let frame else {
                fail(with: TTRPCError(.unavailable, "ttrpc connection closed by the server"))
                stream.close()
                return
            }
            switch frame {
            case .oversized(let header):
                complete(header.streamID, .failure(TTRPCError(.resourceExhausted,
                    "response length \(header.length) exceeds the maximum message size of \(MessageHeader.maxPayload)")))
            case .message(let header, let payload):
                guard header.kind == .response else { continue }
                do {
                    let response = try Ttrpc_Response(serializedBytes: payload)
                    let code = StatusCode(rawValue: response.status.code) ?? .unknown
                    if code == .ok {
                        complete(header.streamID, .success(response.payload.bytes))
                    } else {
                        complete(header.streamID, .failure(TTRPCError(code, response.status.message)))
                    }
                } catch {
                    complete(header.streamID, .failure(TTRPCError(.internal, "response does not decode: \(error)")))
                }
            }
        }
    }
}
