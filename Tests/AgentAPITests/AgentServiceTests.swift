import AgentAPI
import Foundation
import GuestAgent
import Logging
import Sockets
import SystemCalls
import Testing
import TestSupport

/// The agent's API without a VM: the service on one end of a socketpair, or the real
/// cocoon-agent binary as a plain host process on a unix socket.
@Suite struct AgentServiceTests {
    let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    func socketPair() throws -> (FileDescriptor, FileDescriptor) {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        return (FileDescriptor(adopting: fds[0]), FileDescriptor(adopting: fds[1]))
    }

    func serveInBackground(_ fd: FileDescriptor) throws {
        let service = AgentService(mode: .hostProcess, logger: logger)
        try startDetachedThread {
            _ = service.serve(fd)
            fd.close()
        }
    }

    @Test func healthAnswer() throws {
        let (a, b) = try socketPair()
        try serveInBackground(b)
        let client = AgentClient(fd: a)
        let h = try client.health(until: .after(seconds: 10))
        #expect(h.agentVersion == CocoonVersion.string)
        #expect(h.pid == getpid())
        #expect(h.agentRSSKiB > 0)
        #expect(h.memoryTotalKiB > 0)
        #expect(!h.kernelRelease.isEmpty)
        // A second request on the same connection.
        #expect(try client.health(until: .after(seconds: 10)).pid == getpid())
    }

    func exchange(_ bytes: [UInt8], on fd: FileDescriptor) throws -> [UInt8] {
        try fd.writeAll(bytes, until: .after(seconds: 5))
        var out: [UInt8] = []
        while !out.contains(0x0a) {
            let chunk = try fd.read(upTo: 65536, until: .after(seconds: 5))
            if chunk.isEmpty { break }
            out += chunk
        }
        return out
    }

    @Test func unknownMethodIsUnimplemented() throws {
        let (a, b) = try socketPair()
        try serveInBackground(b)
        let reply = try exchange(Array("{\"id\":5,\"method\":\"Format\"}\n".utf8), on: a)
        let response = try LineFramer.decode(AgentResponse.self, from: Array(reply.dropLast()))
        #expect(response.id == 5)
        #expect(response.error?.code == StatusCodesRaw.unimplemented)
    }

    @Test func malformedRequestGetsAnErrorAndTheConnectionSurvives() throws {
        let (a, b) = try socketPair()
        try serveInBackground(b)
        let reply = try exchange(Array("this is not json\n".utf8), on: a)
        let response = try LineFramer.decode(AgentResponse.self, from: Array(reply.dropLast()))
        #expect(response.error?.code == StatusCodesRaw.invalidArgument)
        #expect(try AgentClient(fd: a).health(until: .after(seconds: 5)).pid == getpid())
    }

    @Test func oversizedRequestClosesTheConnection() throws {
        let (a, b) = try socketPair()
        try serveInBackground(b)
        // No newline: the agent must give up at its limit rather than buffer forever.
        let flood = [UInt8](repeating: 0x7b, count: LineFramer.maxLineBytes + 4096)
        try? a.writeAll(flood, until: .after(seconds: 5))
        let end = try a.read(upTo: 16, until: .after(seconds: 5))
        #expect(end.isEmpty)
    }

    @Test func clientRejectsAnAnswerThatIsTooLarge() throws {
        let (a, b) = try socketPair()
        // A hostile "agent" that answers with an endless line.
        try startDetachedThread {
            _ = try? b.read(upTo: 1024, until: .after(seconds: 5))
            try? b.writeAll([UInt8](repeating: 0x20, count: LineFramer.maxLineBytes + 10), until: .after(seconds: 5))
        }
        #expect(throws: AgentAPIError.oversized(LineFramer.maxLineBytes + 10)) {
            try AgentClient(fd: a).health(until: .after(seconds: 5))
        }
        b.close()
    }

    @Test func clientTimesOutOnASilentAgent() throws {
        let (a, b) = try socketPair()
        let watch = Stopwatch()
        #expect(throws: AgentAPIError.timedOut("Health")) { try AgentClient(fd: a).health(until: .after(seconds: 0.3)) }
        #expect(watch.elapsedSeconds < 3)
        b.close()
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
        let client = AgentClient(fd: fd)
        let h = try client.health(until: .after(seconds: 10))
        #expect(h.pid == process.processIdentifier)
        try client.shutdown(until: .after(seconds: 10))
        let deadline = Deadline.after(seconds: 10)
        while process.isRunning && !deadline.hasPassed { sleep(seconds: 0.02) }
        #expect(!process.isRunning)
        #expect(process.terminationStatus == 0)
    }

    @Test func agentArguments() {
        if case .success(let (listen, level)) = AgentMain.parseArguments(["--listen", "vsock:1024", "--log-level", "debug"]) {
            #expect(listen == .vsock(port: 1024))
            #expect(level == .debug)
        } else {
            Issue.record("valid arguments refused")
        }
        if case .success = AgentMain.parseArguments(["--listen", "tcp:1"]) { Issue.record("tcp accepted") }
        if case .success = AgentMain.parseArguments(["--bogus"]) { Issue.record("unknown flag accepted") }
        #expect(ConsoleLogHandler.level(fromKernelCommandLine: "quiet cocoon.log=trace x") == .trace)
        #expect(ConsoleLogHandler.level(fromKernelCommandLine: "cocoon.log=loud") == .info)
    }
}

/// Raw status values, to compare with what crossed the wire.
enum StatusCodesRaw {
    static let invalidArgument: Int32 = 3
    static let unimplemented: Int32 = 12
}
