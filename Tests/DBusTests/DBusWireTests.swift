@testable import DBus
import Testing

struct DBusWireTests {
    static func sample() -> DBusMessage {
        var m = DBusMessage(kind: .methodCall, path: "/org/freedesktop/systemd1", interface: "org.freedesktop.systemd1.Manager",
                            member: "StartTransientUnit", destination: "org.freedesktop.systemd1", body: [
            .string("cocoon-x.scope"), .string("fail"),
            DBusValue.properties([
                ("Description", .string("a container")), ("Delegate", .boolean(true)),
                ("PIDs", .array(element: "u", [.uint32(42)])), ("MemoryLimit", .uint64(1 << 30)),
                ("DeviceAllow", .array(element: "(ss)", [.structure([.string("/dev/char/1:3"), .string("rwm")])])),
            ]),
            .array(element: "(sa(sv))", []),
        ])
        m.serial = 7
        return m
    }

    @Test func aMessageSurvivesEncodingAndDecoding() throws {
        let m = Self.sample()
        let bytes = try m.encode()
        #expect(bytes[0] == UInt8(ascii: "l") && bytes.count % 8 != 0 || bytes.count > 16)
        #expect(try DBusMessage.totalLength(fixedHeader: bytes.prefix(16)) == bytes.count)
        let back = try DBusMessage.decode(bytes)
        #expect(back == m)
        #expect(back.bodySignature == "ssa(sv)a(sa(sv))")
    }

    @Test func layoutFollowsTheSpecification() throws {
        // A uint64 after a byte is padded to 8; an empty array of structs still pads to 8 after its length.
        var w = DBusWriter()
        try w.write(.byte(1))
        try w.write(.uint64(2))
        #expect(w.bytes == [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])
        var e = DBusWriter()
        try e.write(.array(element: "(ss)", []))
        #expect(e.bytes == [0, 0, 0, 0, 0, 0, 0, 0])
        var s = DBusWriter()
        try s.write(.string("ab"))
        #expect(s.bytes == [2, 0, 0, 0, 0x61, 0x62, 0])
        var v = DBusWriter()
        try v.write(.variant(.boolean(true)))
        #expect(v.bytes == [1, 0x62, 0, 0, 1, 0, 0, 0])
    }

    @Test func bigEndianMessagesDecode() throws {
        // A reply as a big-endian peer would send it: method return, serial 3, reply to 7, body "s" = "ok".
        var bytes: [UInt8] = [UInt8(ascii: "B"), 2, 0, 1, 0, 0, 0, 7, 0, 0, 0, 3]
        // header fields: (5, variant u 7), (8, variant g "s")
        let fields: [UInt8] = [5, 1, UInt8(ascii: "u"), 0, 0, 0, 0, 7,
                               8, 1, UInt8(ascii: "g"), 0, 1, UInt8(ascii: "s"), 0]
        bytes += [0, 0, 0, UInt8(fields.count)] + fields
        while bytes.count % 8 != 0 { bytes.append(0) }
        bytes += [0, 0, 0, 2, UInt8(ascii: "o"), UInt8(ascii: "k"), 0]
        let m = try DBusMessage.decode(bytes)
        #expect(m.kind == .methodReturn && m.replySerial == 7 && m.serial == 3)
        #expect(m.body == [.string("ok")])
    }

    @Test func malformedMessagesAreErrorsNotCrashes() throws {
        let good = try Self.sample().encode()
        // Every truncation.
        for n in stride(from: 0, to: good.count, by: 3) {
            #expect(throws: DBusError.self) { try DBusMessage.decode(Array(good.prefix(n))) }
        }
        // Every single-byte corruption either decodes to something well-formed or throws; never traps.
        var generator = SystemRandomNumberGenerator()
        for i in 0..<good.count {
            var bad = good
            bad[i] ^= UInt8.random(in: 1...255, using: &generator)
            _ = try? DBusMessage.decode(bad)
        }
        // A boolean that is neither 0 nor 1.
        var r = DBusReader([2, 0, 0, 0], bigEndian: false)
        #expect(throws: DBusError.self) { try r.read(signature: "b") }
        // Non-zero padding.
        var p = DBusReader([1, 9, 0, 0, 5, 0, 0, 0], bigEndian: false)
        #expect(throws: DBusError.self) { try p.read(signature: "yu") }
        // Signatures: too deep, unbalanced, a dict entry outside an array.
        #expect(throws: DBusError.self) { try DBusSignature.split(String(repeating: "a", count: 40) + "y") }
        #expect(throws: DBusError.self) { try DBusSignature.split("(ss") }
        #expect(throws: DBusError.self) { try DBusSignature.split("{ss}") }
        #expect(try DBusSignature.split("a{sv}us").map { String(decoding: $0, as: UTF8.self) } == ["a{sv}", "u", "s"])
        // An array claiming more bytes than the message has.
        var a = DBusReader([0xff, 0xff, 0, 0, 1], bigEndian: false)
        #expect(throws: DBusError.self) { try a.read(signature: "ay") }
    }

    @Test func valuesThatCannotBeSentAreRefused() {
        var w = DBusWriter()
        #expect(throws: DBusError.self) { try w.write(.objectPath("not/a/path")) }
        #expect(throws: DBusError.self) { try w.write(.string("nul\u{0}inside")) }
        #expect(throws: DBusError.self) { try w.write(.array(element: "u", [.string("x")])) }
    }

    @Test func errorNamesMapToStatusCodes() {
        #expect(DBusConnection.code(forErrorName: "org.freedesktop.systemd1.NoSuchUnit") == .notFound)
        #expect(DBusConnection.code(forErrorName: "org.freedesktop.systemd1.UnitExists") == .alreadyExists)
        #expect(DBusConnection.code(forErrorName: "org.freedesktop.DBus.Error.AccessDenied") == .permissionDenied)
        #expect(DBusConnection.code(forErrorName: "org.example.Whatever") == .unknown)
    }
}
