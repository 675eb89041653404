import Foundation
import Logging
import Processes
import Sockets
import StatusCodes
import SwiftProtobuf
import SystemCalls
import Testing
@testable import TTRPC

/// Wire compatibility with containerd's own Go ttrpc library, in both directions.
@Suite(.enabled(if: GoPeer.unavailableReason == nil, "\(GoPeer.unavailableReason ?? "")"))
struct InteropTests {
    @Test func goClientAgainstSwiftServer() throws {
        let path = "/tmp/cocoon-ttrpc-swift-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let listener = try StreamSocket.listenUnix(path: path)
        defer { unlink(path) }
        let server = TTRPCServer(services: [EchoService.make()], logger: testLogger)
        try startDetachedThread {
            guard let conn = try? StreamSocket.accept(listener, until: .after(seconds: 60)) else { return }
            server.serve(DescriptorStream(conn))
        }
        let r = try GoPeer.runClient(against: path)
        #expect(r["echo"] == "ok hello from go")
        #expect(r["fail"] == "NotFound: failed as asked with code 5")
        #expect(r["unknown-method"] == "Unimplemented: method Nope")
        #expect(r["unknown-service"] == "Unimplemented: service cocoon.test.Missing")
        #expect(r["metadata"] == "ok containerd-namespace-ttrpc=k8s.io,x-two=a,x-two=b deadline=true")
        #expect(r["order"] == "echo,sleep", "a fast call must overtake a slow one on the same connection")
        #expect(r["timeout"] == "DeadlineExceeded")
        #expect(r["big"] == "ok \(3 << 20)")
    }

    @Test func swiftClientAgainstGoServer() throws {
        let (process, path) = try GoPeer.startServer()
        defer {
            _ = process.kill()
            unlink(path)
        }
        let client = try TTRPCClient(stream: DescriptorStream(try StreamSocket.connectUnix(path: path, until: .after(seconds: 10))),
                                     logger: testLogger)
        defer { client.close() }
        let s = EchoService.name

        let echo: Google_Protobuf_StringValue = try client.call(s, "Echo", Google_Protobuf_StringValue("from swift"), timeout: 10)
        #expect(echo.value == "from swift")

        let failure = #expect(throws: TTRPCError.self) {
            _ = try client.call(s, "Fail", Google_Protobuf_Int32Value(7), returning: Google_Protobuf_Empty.self, timeout: 10)
        }
        #expect(failure == TTRPCError(.permissionDenied, "failed as asked with code 7"))

        let unknown = #expect(throws: TTRPCError.self) {
            _ = try client.call(s, "Nope", Google_Protobuf_Empty(), returning: Google_Protobuf_Empty.self, timeout: 10)
        }
        #expect(unknown?.code == .unimplemented)

        let md: Google_Protobuf_StringValue = try client.call(s, "Metadata", Google_Protobuf_Empty(),
            metadata: [("containerd-namespace-ttrpc", "default"), ("x-two", "a"), ("x-two", "b")], timeout: 10)
        #expect(md.value == "containerd-namespace-ttrpc=default,x-two=a,x-two=b deadline=true")
        let noDeadline: Google_Protobuf_StringValue = try client.call(s, "Metadata", Google_Protobuf_Empty(), timeout: nil)
        #expect(noDeadline.value == " deadline=false")

        // Out-of-order responses on one connection, from several threads.
        let order = OrderLog()
        try startDetachedThread {
            let r = Result { try client.call(s, "Sleep", Google_Protobuf_Int64Value(400), returning: Google_Protobuf_Int64Value.self, timeout: 10) }
            order.append((try? r.get()) != nil ? "sleep" : "sleep-failed")
        }
        SystemCalls.sleep(seconds: 0.05)
        _ = try client.call(s, "Echo", Google_Protobuf_StringValue("fast"), returning: Google_Protobuf_StringValue.self, timeout: 10)
        order.append("echo")
        #expect(order.waitFor(count: 2, seconds: 10) == ["echo", "sleep"])

        // The deadline travels to the server, and the caller stops waiting at it.
        let watch = Stopwatch()
        let late = #expect(throws: TTRPCError.self) {
            _ = try client.call(s, "Sleep", Google_Protobuf_Int64Value(3000), returning: Google_Protobuf_Int64Value.self, timeout: 0.2)
        }
        #expect(late?.code == .deadlineExceeded)
        #expect(watch.elapsedSeconds < 2)

        let big: Google_Protobuf_BytesValue = try client.call(s, "Big", Google_Protobuf_Int64Value(3 << 20), timeout: 20)
        #expect(big.value.count == 3 << 20)

        // A request over 4 MiB is refused before it is sent, and the connection stays usable.
        let tooBig = #expect(throws: TTRPCError.self) {
            _ = try client.call(s, "Echo", Google_Protobuf_StringValue(String(repeating: "x", count: 5 << 20)),
                                returning: Google_Protobuf_StringValue.self, timeout: 10)
        }
        #expect(tooBig?.code == .resourceExhausted)
        let again: Google_Protobuf_StringValue = try client.call(s, "Echo", Google_Protobuf_StringValue("still here"), timeout: 10)
        #expect(again.value == "still here")

        // The server dies with a call in flight: the call fails with Unavailable, promptly.
        let dying = Stopwatch()
        try startDetachedThread {
            SystemCalls.sleep(seconds: 0.2)
            _ = process.kill()
        }
        let lost = #expect(throws: TTRPCError.self) {
            _ = try client.call(s, "Sleep", Google_Protobuf_Int64Value(20_000), returning: Google_Protobuf_Int64Value.self, timeout: nil)
        }
        #expect(lost?.code == .unavailable)
        #expect(dying.elapsedSeconds < 5)
        #expect(client.isClosed)
    }
}

final class OrderLog: @unchecked Sendable {
    private let condition = Condition()
    private var items: [String] = []

    func append(_ item: String) {
        condition.withLock {
            items.append(item)
            condition.broadcast()
        }
    }

    func waitFor(count: Int, seconds: Double) -> [String] {
        let deadline = Deadline.after(seconds: seconds)
        return condition.withLock {
            while items.count < count && condition.wait(until: deadline) {}
            return items
        }
    }
}
