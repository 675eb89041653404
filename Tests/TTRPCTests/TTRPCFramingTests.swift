import Foundation
import Sockets
import StatusCodes
import SwiftProtobuf
import SystemCalls
import Testing
@testable import TTRPC

/// A Swift server on one end of a socketpair, and raw bytes (or a Swift client) on the other.
final class ServerHarness: @unchecked Sendable {
    let peer: FileDescriptor
    private let finished = Condition()
    private var done = false

    init(maxConcurrentRequests: Int = 128) throws {
        let (a, b) = try StreamSocket.pair()
        peer = b
        let server = TTRPCServer(services: [EchoService.make()], logger: testLogger, maxConcurrentRequests: maxConcurrentRequests)
        try startDetachedThread { [self] in
            server.serve(DescriptorStream(a))
            finished.withLock {
                done = true
                finished.broadcast()
            }
        }
    }

    /// True when the server's connection loop returned before the deadline.
    func serverFinished(within seconds: Double) -> Bool {
        let deadline = Deadline.after(seconds: seconds)
        return finished.withLock {
            while !done && finished.wait(until: deadline) {}
            return done
        }
    }

    func send(id: UInt32, type: UInt8 = 1, payload: [UInt8], declaredLength: UInt32? = nil) throws {
        let header = MessageHeader(length: declaredLength ?? UInt32(payload.count), streamID: id, type: type)
        try peer.writeAll(header.bytes + payload, until: .after(seconds: 10))
    }

    func request(_ method: String, _ message: some SwiftProtobuf.Message) throws -> [UInt8] {
        var r = Ttrpc_Request()
        r.service = EchoService.name
        r.method = method
        r.payload = try message.serializedData()
        return try r.serializedBytes()
    }

    private var received: [UInt8] = []

    /// Reads one response frame: its stream id and decoded body. Bytes of the next frame stay buffered.
    func response() throws -> (UInt32, Ttrpc_Response) {
        func fill(_ n: Int) throws {
            while received.count < n {
                let chunk = try peer.read(upTo: 65536, until: .after(seconds: 10))
                if chunk.isEmpty { throw PeerError("server closed the connection") }
                received += chunk
            }
        }
        try fill(MessageHeader.size)
        let header = MessageHeader(decoding: received[0..<MessageHeader.size])
        #expect(header.kind == .response)
        let end = MessageHeader.size + Int(header.length)
        try fill(end)
        let body = Array(received[MessageHeader.size..<end])
        received.removeSubrange(0..<end)
        return (header.streamID, try Ttrpc_Response(serializedBytes: body))
    }
}

@Suite struct TTRPCFramingTests {
    @Test func headerRoundTrip() {
        let h = MessageHeader(length: 0x0102_0304, streamID: 0xA0B0_C0D1, type: 2, flags: 0x05)
        #expect(h.bytes == [1, 2, 3, 4, 0xA0, 0xB0, 0xC0, 0xD1, 2, 5])
        #expect(MessageHeader(decoding: h.bytes[...]) == h)
    }

    @Test func oversizedRequestIsAnsweredAndTheConnectionLives() throws {
        let h = try ServerHarness()
        let size = 5 << 20
        try h.send(id: 1, payload: [UInt8](repeating: 0xEE, count: size))
        let (id, r) = try h.response()
        #expect(id == 1)
        #expect(StatusCode(rawValue: r.status.code) == .resourceExhausted)
        #expect(r.status.message.contains("\(size)"))
        try h.send(id: 3, payload: try h.request("Echo", Google_Protobuf_StringValue("after")))
        let (id2, r2) = try h.response()
        #expect(id2 == 3 && r2.status.code == 0)
        #expect(try Google_Protobuf_StringValue(serializedBytes: r2.payload).value == "after")
    }

    @Test func garbageRequestBodyIsInvalidArgument() throws {
        let h = try ServerHarness()
        try h.send(id: 1, payload: [0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
        let (_, r) = try h.response()
        #expect(StatusCode(rawValue: r.status.code) == .invalidArgument)
        // A request whose payload is not the method's message type.
        var req = Ttrpc_Request()
        req.service = EchoService.name
        req.method = "Echo"
        req.payload = Data([0x0A, 0x7F])  // field 1, length 127, but no bytes follow
        try h.send(id: 3, payload: try req.serializedBytes())
        let (_, r2) = try h.response()
        #expect(StatusCode(rawValue: r2.status.code) == .invalidArgument)
        #expect(r2.status.message.contains("does not decode"))
    }

    @Test func streamIDsMustBeOddAndIncreasing() throws {
        let h = try ServerHarness()
        let echo = try h.request("Echo", Google_Protobuf_StringValue("x"))
        try h.send(id: 2, payload: echo)
        let (id, r) = try h.response()
        #expect(id == 2 && StatusCode(rawValue: r.status.code) == .invalidArgument)
        try h.send(id: 7, payload: echo)
        #expect(try h.response().1.status.code == 0)
        try h.send(id: 5, payload: echo)
        let (id3, r3) = try h.response()
        #expect(id3 == 5 && StatusCode(rawValue: r3.status.code) == .invalidArgument)
    }

    @Test func unknownFrameTypesAreSkipped() throws {
        let h = try ServerHarness()
        try h.send(id: 1, type: 3, payload: [1, 2, 3])
        try h.send(id: 1, type: 0x7F, payload: [])
        try h.send(id: 3, payload: try h.request("Echo", Google_Protobuf_StringValue("y")))
        let (id, r) = try h.response()
        #expect(id == 3 && r.status.code == 0)
    }

    @Test func truncatedFrameClosesTheConnectionQuietly() throws {
        let h = try ServerHarness()
        try h.send(id: 1, payload: [1, 2, 3], declaredLength: 100)
        shutdown(h.peer.rawValue, Int32(SHUT_WR))
        #expect(h.serverFinished(within: 5))
    }

    @Test func tooManyRequestsInFlight() throws {
        let h = try ServerHarness(maxConcurrentRequests: 2)
        let sleep = try h.request("Sleep", Google_Protobuf_Int64Value(500))
        try h.send(id: 1, payload: sleep)
        try h.send(id: 3, payload: sleep)
        try h.send(id: 5, payload: sleep)
        let (id, r) = try h.response()
        #expect(id == 5 && StatusCode(rawValue: r.status.code) == .resourceExhausted)
        let others = Set([try h.response().0, try h.response().0])
        #expect(others == [1, 3])
    }

    @Test func swiftClientAndServer() throws {
        let h = try ServerHarness()
        let client = try TTRPCClient(stream: DescriptorStream(h.peer), logger: testLogger)
        let echo: Google_Protobuf_StringValue = try client.call(EchoService.name, "Echo", Google_Protobuf_StringValue("z"), timeout: 5)
        #expect(echo.value == "z")
        // An answer too big for a frame comes back as ResourceExhausted, not as silence.
        let big = #expect(throws: TTRPCError.self) {
            _ = try client.call(EchoService.name, "Big", Google_Protobuf_Int64Value(5 << 20),
                                returning: Google_Protobuf_BytesValue.self, timeout: 10)
        }
        #expect(big?.code == .resourceExhausted)
        // A handler's error keeps its code across the wire.
        let e = #expect(throws: TTRPCError.self) {
            _ = try client.call(EchoService.name, "Fail", Google_Protobuf_Int32Value(9), returning: Google_Protobuf_Empty.self, timeout: 5)
        }
        #expect(e == TTRPCError(.failedPrecondition, "failed as asked with code 9"))
        client.close()
        #expect(h.serverFinished(within: 5))
        #expect(throws: TTRPCError.self) {
            _ = try client.call(EchoService.name, "Echo", Google_Protobuf_StringValue("late"), returning: Google_Protobuf_StringValue.self, timeout: 5)
        }
    }

    @Test func garbageResponseFailsOnlyThatCall() throws {
        let (a, b) = try StreamSocket.pair()
        let client = try TTRPCClient(stream: DescriptorStream(a), logger: testLogger)
        defer { client.close() }
        // A fake server that answers the first request with an undecodable response body.
        try startDetachedThread {
            _ = try? b.read(upTo: 65536, until: .after(seconds: 10))
            let header = MessageHeader(length: 3, streamID: 1, type: 2)
            try? b.writeAll(header.bytes + [0xFF, 0xFF, 0xFF], until: .after(seconds: 5))
        }
        let e = #expect(throws: TTRPCError.self) {
            _ = try client.call(EchoService.name, "Echo", Google_Protobuf_StringValue("q"), returning: Google_Protobuf_StringValue.self, timeout: 5)
        }
        #expect(e?.code == .internal)
        #expect(!client.isClosed)
    }
}
