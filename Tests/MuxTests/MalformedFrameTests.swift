import Glibc
import Sockets
import StatusCodes
import SystemCalls
import Testing
@testable import Mux

/// A guest mux facing a raw, hostile host: every violation ends the connection cleanly.
@Suite struct MalformedFrameTests {
    func frame(_ channel: UInt32, _ kind: UInt8, _ payload: [UInt8], flags: UInt8 = 0, length: Int? = nil) -> [UInt8] {
        let l = UInt32(length ?? payload.count)
        return MuxWire.bytes(channel) + [kind, flags] + MuxWire.bytes(l) + payload
    }

    func open(_ channel: UInt32, _ name: String = "x") -> [UInt8] { frame(channel, 1, Array(name.utf8)) }

    /// Sends the frames and expects the guest mux to fail with DataLoss and close the stream.
    func expectViolation(_ frames: [UInt8], mentioning text: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (raw, b) = try StreamSocket.pair()
        let guest = try Mux(stream: DescriptorStream(b), role: .guest, logger: logger)
        try raw.writeAll(frames, until: .after(seconds: 5))
        let reason = guest.waitUntilClosed(until: .after(seconds: 5))
        #expect(reason?.code == .dataLoss, sourceLocation: sourceLocation)
        #expect(reason?.message.contains(text) == true, "\(reason?.message ?? "no failure")", sourceLocation: sourceLocation)
        // The mux closed its end: the hostile peer reads end of file.
        var sawEOF = false
        let deadline = Deadline.after(seconds: 5)
        while !sawEOF, let chunk = try? raw.read(upTo: 65536, until: deadline) { sawEOF = chunk.isEmpty }
        #expect(sawEOF, sourceLocation: sourceLocation)
    }

    @Test func unknownKind() throws { try expectViolation(frame(1, 9, []), mentioning: "unknown frame kind 9") }
    @Test func flagsSet() throws { try expectViolation(open(1) + frame(1, 2, [1], flags: 4), mentioning: "flags 4") }
    @Test func oversizedData() throws {
        try expectViolation(open(1) + frame(1, 2, [], length: MuxWire.maxData + 1), mentioning: "at most \(MuxWire.maxData)")
    }
    @Test func dataBeyondCredit() throws {
        var frames = open(1)
        for _ in 0...(MuxWire.initialWindow / MuxWire.maxData) { frames += frame(1, 2, [UInt8](repeating: 7, count: MuxWire.maxData)) }
        try expectViolation(frames, mentioning: "of credit")
    }
    @Test func dataForAChannelNeverOpened() throws { try expectViolation(frame(5, 2, [1]), mentioning: "never opened") }
    @Test func openWithTheGuestsParity() throws { try expectViolation(open(2), mentioning: "our parity") }
    @Test func reusedChannelID() throws { try expectViolation(open(3) + open(3), mentioning: "not increasing") }
    @Test func openWithoutName() throws { try expectViolation(frame(1, 1, []), mentioning: "name") }
    @Test func openWithBadUTF8() throws { try expectViolation(frame(1, 1, [0xFF, 0xFE]), mentioning: "UTF-8") }
    @Test func windowOfWrongSize() throws { try expectViolation(open(1) + frame(1, 3, [1, 2]), mentioning: "window frame of 2 bytes") }
    @Test func creditOverflow() throws {
        try expectViolation(open(1) + frame(1, 3, MuxWire.bytes(0xFFFF_FFFF)), mentioning: "overflows")
    }
    @Test func dataAfterClose() throws {
        try expectViolation(open(1) + frame(1, 4, []) + frame(1, 2, [1]), mentioning: "after its close")
    }
    @Test func truncatedFrame() throws {
        let (raw, b) = try StreamSocket.pair()
        let guest = try Mux(stream: DescriptorStream(b), role: .guest, logger: logger)
        try raw.writeAll(open(1) + Array(frame(1, 2, [1, 2, 3, 4]).prefix(12)), until: .after(seconds: 5))
        shutdown(raw.rawValue, Int32(SHUT_WR))
        #expect(guest.waitUntilClosed(until: .after(seconds: 5))?.code == .dataLoss)
    }
    @Test func tooManyUnacceptedChannels() throws {
        var frames: [UInt8] = []
        for i in 0...Mux.maxUnaccepted { frames += open(UInt32(2 * i + 1)) }
        try expectViolation(frames, mentioning: "not accepted")
    }

    @Test func channelsFailWithTheViolation() throws {
        let (raw, b) = try StreamSocket.pair()
        let guest = try Mux(stream: DescriptorStream(b), role: .guest, logger: logger)
        try raw.writeAll(open(1, "victim"), until: .after(seconds: 5))
        let victim = try guest.accept(named: "victim", until: .after(seconds: 5))
        try raw.writeAll(frame(1, 0x42, []), until: .after(seconds: 5))
        let e = #expect(throws: MuxError.self) { _ = try victim.readBytes(upTo: 1, until: .after(seconds: 5)) }
        #expect(e?.code == .dataLoss)
    }
}
