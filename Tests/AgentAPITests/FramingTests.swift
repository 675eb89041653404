import AgentAPI
import Testing

@Suite struct FramingTests {
    @Test func roundTrip() throws {
        let request = AgentRequest(id: 7, method: "Health")
        var framer = LineFramer()
        framer.append(try LineFramer.encode(request))
        let line = try #require(try framer.nextLine())
        #expect(try LineFramer.decode(AgentRequest.self, from: line) == request)
        #expect(try framer.nextLine() == nil)
    }

    @Test func partialAndMultipleLines() throws {
        var framer = LineFramer()
        framer.append(Array("{\"a\":".utf8))
        #expect(try framer.nextLine() == nil)
        framer.append(Array("1}\n{}\n".utf8))
        #expect(try framer.nextLine() == Array("{\"a\":1}".utf8))
        #expect(try framer.nextLine() == Array("{}".utf8))
    }

    @Test func oversizedLineIsRefused() {
        var framer = LineFramer()
        framer.append([UInt8](repeating: 0x41, count: LineFramer.maxLineBytes + 1))
        #expect(throws: AgentAPIError.oversized(LineFramer.maxLineBytes + 1)) { try framer.nextLine() }
    }

    @Test func malformedJSONIsAnError() {
        #expect(throws: AgentAPIError.self) { try LineFramer.decode(AgentRequest.self, from: Array("{nope".utf8)) }
        #expect(AgentAPIError.malformed("x").code == .invalidArgument)
        #expect(AgentAPIError.oversized(1).code == .resourceExhausted)
    }
}
