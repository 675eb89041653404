import Logging
import Sockets
import StatusCodes
import SystemCalls
import Testing
@testable import Mux

let logger = Logger(label: "mux-test") { _ in SwiftLogNoOpLogHandler() }

/// A host mux and a guest mux joined by a socketpair.
func connectedPair() throws -> (host: Mux, guest: Mux) {
    let (a, b) = try StreamSocket.pair()
    return (try Mux(stream: DescriptorStream(a), role: .host, logger: logger),
            try Mux(stream: DescriptorStream(b), role: .guest, logger: logger))
}

func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31) &+ seed }
}

func readAll(_ c: MuxChannel, deadline: Deadline = .after(seconds: 30)) throws -> [UInt8] {
    var out: [UInt8] = []
    while true {
        let chunk = try c.readBytes(upTo: 100_000, until: deadline)
        if chunk.isEmpty { return out }
        out += chunk
    }
}

@Suite struct MuxTests {
    @Test func channelsCarryBytesBothWaysAndHalfClose() throws {
        let (host, guest) = try connectedPair()
        defer { host.close(); guest.close() }
        let h = try host.open("stdio/1")
        let g = try guest.accept(named: "stdio/1", until: .after(seconds: 5))
        #expect(h.id % 2 == 1 && g.id == h.id)
        try h.writeBytes(Array("ping".utf8))
        #expect(try g.readBytes(upTo: 100, until: .after(seconds: 5)) == Array("ping".utf8))
        try g.writeBytes(Array("pong".utf8))
        g.closeWrite()
        #expect(try readAll(h) == Array("pong".utf8), "close is end of file for the reader")
        // The other half still works after one side closed.
        try h.writeBytes(Array("more".utf8))
        h.closeWrite()
        #expect(try readAll(g) == Array("more".utf8))
        // A guest-opened channel has an even id.
        let fromGuest = try guest.open("events")
        #expect(fromGuest.id % 2 == 0)
        #expect(try host.accept(named: "events", until: .after(seconds: 5)).id == fromGuest.id)
    }

    @Test func manyChannelsInParallelKeepTheirBytesApart() throws {
        let (host, guest) = try connectedPair()
        defer { host.close(); guest.close() }
        let size = 1 << 20
        let results = Results()
        for i in 0..<8 {
            let h = try host.open("c\(i)")
            let g = try guest.accept(named: "c\(i)", until: .after(seconds: 5))
            try startDetachedThread {
                try? h.writeBytes(pattern(size, seed: UInt8(i)))
                h.closeWrite()
            }
            try startDetachedThread {
                try? g.writeBytes(pattern(size, seed: UInt8(100 + i)))
                g.closeWrite()
            }
            try startDetachedThread { results.add("g\(i)", (try? readAll(g)) == pattern(size, seed: UInt8(i))) }
            try startDetachedThread { results.add("h\(i)", (try? readAll(h)) == pattern(size, seed: UInt8(100 + i))) }
        }
        let all = results.wait(count: 16, seconds: 60)
        #expect(all.count == 16)
        #expect(all.values.allSatisfy { $0 }, "every channel gets exactly its own bytes: \(all)")
    }

    @Test func aStalledReaderStallsOnlyItsChannel() throws {
        let (host, guest) = try connectedPair()
        defer { host.close(); guest.close() }
        let slow = try host.open("slow")
        let slowPeer = try guest.accept(named: "slow", until: .after(seconds: 5))
        let fast = try host.open("fast")
        let fastPeer = try guest.accept(named: "fast", until: .after(seconds: 5))
        let results = Results()
        try startDetachedThread {
            results.add("slow-written", (try? slow.writeBytes(pattern(2 << 20, seed: 1))) != nil)
        }
        // Nobody reads "slow"; "fast" still moves 4 MiB.
        try startDetachedThread {
            try? fast.writeBytes(pattern(4 << 20, seed: 2))
            fast.closeWrite()
        }
        #expect(try readAll(fastPeer) == pattern(4 << 20, seed: 2))
        #expect(slowPeer.bufferedCount <= MuxWire.initialWindow, "the mux buffers at most one window per channel")
        #expect(results.snapshot()["slow-written"] == nil, "the writer waits for credit")
        // Once read, the stalled channel delivers everything, in order.
        var got: [UInt8] = []
        let deadline = Deadline.after(seconds: 30)
        while got.count < 2 << 20 { got += try slowPeer.readBytes(upTo: 65536, until: deadline) }
        #expect(got == pattern(2 << 20, seed: 1))
        #expect(results.wait(count: 1, seconds: 10)["slow-written"] == true)
    }

    @Test func writeTimeoutWhenThePeerNeverReads() throws {
        let (host, guest) = try connectedPair()
        defer { host.close(); guest.close() }
        let c = try host.open("stuck")
        _ = try guest.accept(named: "stuck", until: .after(seconds: 5))
        c.writeTimeout = 0.2
        let e = #expect(throws: MuxError.self) { try c.writeBytes(pattern(MuxWire.initialWindow + 1, seed: 0)) }
        #expect(e?.code == .deadlineExceeded)
    }

    @Test func resetEndsOneChannelOnly() throws {
        let (host, guest) = try connectedPair()
        defer { host.close(); guest.close() }
        let a = try host.open("a")
        let b = try host.open("b")
        let ga = try guest.accept(named: "a", until: .after(seconds: 5))
        let gb = try guest.accept(named: "b", until: .after(seconds: 5))
        ga.reset(reason: "process gone")
        let e = #expect(throws: MuxError.self) { _ = try a.readBytes(upTo: 10, until: .after(seconds: 5)) }
        #expect(e?.code == .aborted)
        #expect(e?.message.contains("process gone") == true)
        try b.writeBytes([1, 2, 3])
        #expect(try gb.readBytes(upTo: 10, until: .after(seconds: 5)) == [1, 2, 3])
        // Data the peer sent before it saw the reset is dropped, not a violation.
        try? a.writeBytes([9])
        try b.writeBytes([4])
        #expect(try gb.readBytes(upTo: 10, until: .after(seconds: 5)) == [4])
        #expect(guest.failure == nil && host.failure == nil)
    }

    @Test func acceptAndReadHaveDeadlines() throws {
        let (host, guest) = try connectedPair()
        defer { host.close(); guest.close() }
        let e = #expect(throws: MuxError.self) { _ = try guest.accept(named: "never", until: .after(seconds: 0.1)) }
        #expect(e?.code == .deadlineExceeded)
        let c = try host.open("quiet")
        let r = #expect(throws: MuxError.self) { _ = try c.readBytes(upTo: 1, until: .after(seconds: 0.1)) }
        #expect(r?.code == .deadlineExceeded)
        #expect(throws: MuxError.self) { _ = try host.open(String(repeating: "n", count: 300)) }
    }

    @Test func peerGoneFailsEveryChannel() throws {
        let (host, guest) = try connectedPair()
        let c = try host.open("x")
        _ = try guest.accept(named: "x", until: .after(seconds: 5))
        let results = Results()
        try startDetachedThread {
            do {
                _ = try c.readBytes(upTo: 10, until: .after(seconds: 10))
                results.add("read", false)
            } catch { results.add("read", (error as? MuxError)?.code == .unavailable) }
        }
        sleep(seconds: 0.1)
        guest.close()
        #expect(results.wait(count: 1, seconds: 5)["read"] == true)
        #expect(host.waitUntilClosed(until: .after(seconds: 5))?.code == .unavailable)
        #expect(throws: MuxError.self) { _ = try host.open("y") }
    }
}

/// Thread-safe results from worker threads.
final class Results: @unchecked Sendable {
    private let condition = Condition()
    private var values: [String: Bool] = [:]

    func add(_ key: String, _ ok: Bool) {
        condition.withLock {
            values[key] = ok
            condition.broadcast()
        }
    }

    func snapshot() -> [String: Bool] { condition.withLock { values } }

    func wait(count: Int, seconds: Double) -> [String: Bool] {
        let deadline = Deadline.after(seconds: seconds)
        return condition.withLock {
            while values.count < count && condition.wait(until: deadline) {}
            return values
        }
    }
}
