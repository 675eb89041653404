import AgentAPI
import Foundation
import GuestAgent
import Logging
import TTRPC
import Sockets
import SystemCalls
import Testing
import TestSupport

/// The agent's API without a VM: the service on one end of a socketpair, or the real
/// cocoon-agent binary as a plain host process on a unix socket.
@Suite struct AgentServiceTests {
    let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    /// The agent's mux + ttrpc server on one end of a socketpair; the host client on the other.
    func connectedClient(mode: AgentService.Mode = .hostProcess) throws -> (AgentClient, FileDescriptor) {
        let (a, b) = try StreamSocket.pair()
        let service = AgentService(mode: mode, stateRoot: "/run/cocoon-test-agent", logger: logger) {}
        try startDetachedThread {
            AgentMain.serveMux(on: DescriptorStream(b), service: service, logger: logger)
            b.close()
        }
        return (try AgentClient(stream: DescriptorStream(a), logger: logger), a)
    }

    @Test func healthAnswer() throws {
        let (client, _) = try connectedClient()
        defer { client.close() }
        let h = try client.health(timeout: 10)
        #expect(h.agentVersion == CocoonVersion.string)
        #expect(h.pid == getpid())
        #expect(h.agentRssKib > 0)
        #expect(h.memoryTotalKib > 0)
        #expect(!h.kernelRelease.isEmpty)
        // A second request on the same connection.
        #expect(try client.health(timeout: 10).pid == getpid())
    }

    @Test func guestDetails() throws {
        let (client, _) = try connectedClient()
        defer { client.close() }
        let d = try client.guestDetails(timeout: 10)
        #expect(d.onlineCpus >= 1)
        #expect(d.filesystems.contains("proc"))
        #expect(d.memoryTotalKib > 0)
    }

    @Test func concurrentCallsOnOneConnection() throws {
        let (client, _) = try connectedClient()
        defer { client.close() }
        let failures = Counter()
        let done = Counter()
        for _ in 0..<16 {
            try startDetachedThread {
                for _ in 0..<20 where (try? client.health(timeout: 10)) == nil { failures.increment() }
                done.increment()
            }
        }
        let deadline = Deadline.after(seconds: 30)
        while done.value < 16 && !deadline.hasPassed { sleep(seconds: 0.01) }
        #expect(done.value == 16)
        #expect(failures.value == 0)
    }

    @Test func unknownMethodIsUnimplemented() throws {
        let (client, _) = try connectedClient()
        defer { client.close() }
        let error = #expect(throws: AgentAPIError.self) {
            _ = try client.call("Format", Cocoon_Agent_V1_Empty(), returning: Cocoon_Agent_V1_Empty.self, timeout: 5)
        }
        #expect(error?.code == .unimplemented)
        #expect(error?.message.contains("Format") == true)
        // The connection survives the refusal.
        #expect(try client.health(timeout: 5).pid == getpid())
    }

    @Test func setTimeIsRefusedOutsideAGuest() throws {
        let (client, _) = try connectedClient()
        defer { client.close() }
        let error = #expect(throws: AgentAPIError.self) {
            try client.setTime(unixNanoseconds: 1_700_000_000_000_000_000, timeout: 5)
        }
        #expect(error?.code == .failedPrecondition)
    }

    @Test func setTimeValidatesItsArgumentInAGuest() throws {
        // Guest mode, but a non-positive time is refused before any clock is touched.
        let (client, _) = try connectedClient(mode: .guest)
        defer { client.close() }
        let error = #expect(throws: AgentAPIError.self) { try client.setTime(unixNanoseconds: -5, timeout: 5) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("unix_nanoseconds") == true)
    }

    @Test func garbageOnTheTransportEndsTheSessionWithoutACrash() throws {
        let (a, b) = try StreamSocket.pair()
        let service = AgentService(mode: .hostProcess, stateRoot: "/run/cocoon-test-agent", logger: logger) {}
        let ended = Counter()
        try startDetachedThread {
            AgentMain.serveMux(on: DescriptorStream(b), service: service, logger: logger)
            ended.increment()
            b.close()
        }
        // An impossible mux frame: an unknown kind on channel 7.
        try a.writeAll([0, 0, 0, 7, 0x7f, 0, 0, 0, 0, 0] + Array(repeating: 0x41, count: 64), until: .after(seconds: 5))
        let deadline = Deadline.after(seconds: 10)
        while ended.value == 0 && !deadline.hasPassed { sleep(seconds: 0.01) }
        #expect(ended.value == 1)
        a.close()
    }

    @Test func clientTimesOutOnASilentAgent() throws {
        let (a, b) = try StreamSocket.pair()
        defer { b.close() }
        let client = try AgentClient(stream: DescriptorStream(a), logger: logger)
        defer { client.close() }
        let watch = Stopwatch()
        let error = #expect(throws: AgentAPIError.self) { try client.health(timeout: 0.3) }
        #expect(error?.code == .deadlineExceeded)
        #expect(watch.elapsedSeconds < 3)
    }

    @Test func clientFailsFastWhenTheAgentGoesAway() throws {
        let (a, b) = try StreamSocket.pair()
        let client = try AgentClient(stream: DescriptorStream(a), logger: logger)
        defer { client.close() }
        try startDetachedThread {
            sleep(seconds: 0.2)
            b.close()
        }
        let watch = Stopwatch()
        let error = #expect(throws: AgentAPIError.self) { try client.health(timeout: 20) }
        #expect(error?.code == .unavailable)
        #expect(watch.elapsedSeconds < 10)
    }

    /// The agent binary built by this package, next to the test bundle.
    static var agentBinary: String? { BuiltProducts.path(of: "cocoon-agent") }

    @Test(.enabled(if: agentBinary != nil, "cocoon-agent is not built next to the tests: run `swift build` first"))
    func agentBinaryServesOnAUnixSocket() throws {
        let binary = try #require(Self.agentBinary)
        let socket = NSTemporaryDirectory() + "cocoon-agent-test-\(getpid()).sock"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--listen", "unix:\(socket)", "--log-level", "error"]
        try process.run()
        defer {
            if process.isRunning { process.terminate() }
            unlink(socket)
        }
        let fd = try StreamSocket.connectUnix(path: socket, until: .after(seconds: 10))
        let client = try AgentClient(stream: DescriptorStream(fd), logger: logger)
        defer { client.close() }
        let h = try client.health(timeout: 10)
        #expect(h.pid == process.processIdentifier)
        try client.shutdown(timeout: 10)
        let deadline = Deadline.after(seconds: 10)
        while process.isRunning && !deadline.hasPassed { sleep(seconds: 0.02) }
        #expect(!process.isRunning)
        #expect(process.terminationStatus == 0)
    }

    @Test func agentArguments() {
        if case .success(let parsed) = AgentMain.parseArguments(["--listen", "vsock:1024", "--log-level", "debug", "--state-root", "/tmp/s"]) {
            #expect(parsed.listen == .vsock(port: 1024))
            #expect(parsed.level == .debug)
            #expect(parsed.stateRoot == "/tmp/s")
        } else {
            Issue.record("valid arguments refused")
        }
        if case .success = AgentMain.parseArguments(["--listen", "tcp:1"]) { Issue.record("tcp accepted") }
        if case .success = AgentMain.parseArguments(["--bogus"]) { Issue.record("unknown flag accepted") }
        if case .success = AgentMain.parseArguments(["--state-root", "relative"]) { Issue.record("relative state root accepted") }
        #expect(ConsoleLogHandler.level(fromKernelCommandLine: "quiet cocoon.log=trace x") == .trace)
        #expect(ConsoleLogHandler.level(fromKernelCommandLine: "cocoon.log=loud") == .info)
    }
}

/// A thread-safe count for the tests' background threads.
final class Counter: @unchecked Sendable {
    private let lock = NSLockLite()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
