/// One D-Bus message: a method call, its reply or error, or a signal.
public struct DBusMessage: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case methodCall = 1, methodReturn = 2, error = 3, signal = 4
    }

    /// Replies from systemd are a few hundred bytes; anything near this is not a peer cocoon talks to.
    public static let maxLength = 8 << 20
    static let fixedHeaderLength = 16

    public var kind: Kind
    public var flags: UInt8 = 0
    public var serial: UInt32 = 0
    public var path: String?
    public var interface: String?
    public var member: String?
    public var errorName: String?
    public var replySerial: UInt32?
    public var destination: String?
    public var sender: String?
    public var body: [DBusValue] = []

    public init(kind: Kind, path: String? = nil, interface: String? = nil, member: String? = nil,
                destination: String? = nil, body: [DBusValue] = []) {
        self.kind = kind
        self.path = path
        self.interface = interface
        self.member = member
        self.destination = destination
        self.body = body
    }

    public var bodySignature: String { body.map(\.signature).joined() }

    /// The first body value as a string, as error replies carry their text.
    public var errorText: String { body.first?.string ?? "" }

    public func encode() throws(DBusError) -> [UInt8] {
        var bodyWriter = DBusWriter()
        for value in body { try bodyWriter.write(value) }
        var fields: [DBusValue] = []
        func field(_ code: UInt8, _ value: DBusValue?) {
            if let value { fields.append(.structure([.byte(code), .variant(value)])) }
        }
        field(1, path.map(DBusValue.objectPath))
        field(2, interface.map(DBusValue.string))
        field(3, member.map(DBusValue.string))
        field(4, errorName.map(DBusValue.string))
        field(5, replySerial.map(DBusValue.uint32))
        field(6, destination.map(DBusValue.string))
        field(8, body.isEmpty ? nil : .signature(bodySignature))
        var w = DBusWriter()
        w.bytes = [UInt8(ascii: "l"), kind.rawValue, flags, 1]
        w.put(UInt32(bodyWriter.bytes.count))
        w.put(serial)
        try w.write(.array(element: "(yv)", fields))
        w.pad(to: 8)
        w.bytes += bodyWriter.bytes
        guard w.bytes.count <= Self.maxLength else { throw DBusError(.invalidArgument, "D-Bus message longer than \(Self.maxLength) bytes") }
        return w.bytes
    }

    /// The whole message's length from its first 16 bytes, so a reader knows how much to wait for.
    static func totalLength(fixedHeader h: ArraySlice<UInt8>) throws(DBusError) -> Int {
        guard h.count >= fixedHeaderLength else { throw .malformed("truncated header") }
        var r = DBusReader(Array(h), bigEndian: try bigEndian(h.first!))
        r.offset = 4
        let bodyLength = Int(try r.integer(UInt32.self))
        r.offset = 12
        let fieldsLength = Int(try r.integer(UInt32.self))
        guard bodyLength <= maxLength, fieldsLength <= maxLength else { throw .malformed("message longer than \(maxLength) bytes") }
        let total = (fixedHeaderLength + fieldsLength + 7) / 8 * 8 + bodyLength
        guard total <= maxLength else { throw .malformed("message longer than \(maxLength) bytes") }
        return total
    }

    static func bigEndian(_ marker: UInt8) throws(DBusError) -> Bool {
        switch marker {
        case UInt8(ascii: "l"): return false
        case UInt8(ascii: "B"): return true
        default: throw .malformed("unknown byte order '\(marker)'")
        }
    }

    /// Decodes exactly one message; every field is checked against the type the specification gives it.
    public static func decode(_ bytes: [UInt8]) throws(DBusError) -> DBusMessage {
        let total = try totalLength(fixedHeader: bytes.prefix(fixedHeaderLength))
        guard bytes.count == total else { throw .malformed("length \(bytes.count), header says \(total)") }
        var r = DBusReader(bytes, bigEndian: try bigEndian(bytes[0]))
        guard let kind = Kind(rawValue: bytes[1]) else { throw .malformed("unknown message type \(bytes[1])") }
        guard bytes[3] == 1 else { throw .malformed("protocol version \(bytes[3])") }
        var m = DBusMessage(kind: kind)
        m.flags = bytes[2]
        r.offset = 4
        let bodyLength = Int(try r.integer(UInt32.self))
        m.serial = try r.integer(UInt32.self)
        guard m.serial != 0 else { throw .malformed("serial 0") }
        guard case .array(_, let fields) = try r.read(type: Array("a(yv)".utf8)[...]) else { throw .malformed("header fields") }
        var signature = ""
        for f in fields {
            guard case .structure(let pair) = f, pair.count == 2, case .byte(let code) = pair[0],
                  case .variant(let value) = pair[1] else { throw .malformed("header field") }
            func want(_ sig: String) throws(DBusError) {
                guard value.signature == sig else { throw .malformed("header field \(code) of type '\(value.signature)'") }
            }
            switch code {
            case 1: try want("o"); m.path = value.string
            case 2: try want("s"); m.interface = value.string
            case 3: try want("s"); m.member = value.string
            case 4: try want("s"); m.errorName = value.string
            case 5: try want("u"); m.replySerial = value.uint32
            case 6: try want("s"); m.destination = value.string
            case 7: try want("s"); m.sender = value.string
            case 8: try want("g"); signature = value.string ?? ""
            case 9:
                try want("u")
                // cocoon never negotiates descriptor passing, so a message claiming some is not for it.
                if value.uint32 != 0 { throw .malformed("carries file descriptors, which were not negotiated") }
            default: break // The specification says unknown fields are ignored.
            }
        }
        try r.align(8)
        guard total - r.offset == bodyLength else { throw .malformed("body length") }
        m.body = try r.read(signature: signature)
        guard r.offset == total else { throw .malformed("body shorter than its signature") }
        switch kind {
        case .methodCall: guard m.path != nil, m.member != nil else { throw .malformed("method call without path or member") }
        case .methodReturn: guard m.replySerial != nil else { throw .malformed("reply without reply serial") }
        case .error: guard m.replySerial != nil, m.errorName != nil else { throw .malformed("error without name or reply serial") }
        case .signal: guard m.path != nil, m.interface != nil, m.member != nil else { throw .malformed("signal without path, interface or member") }
        }
        return m
    }

    static func isValidObjectPath(_ s: String) -> Bool {
        if s == "/" { return true }
        guard s.hasPrefix("/"), !s.hasSuffix("/") else { return false }
        return s.dropFirst().split(separator: "/", omittingEmptySubsequences: false).allSatisfy { element in
            !element.isEmpty && element.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
            }
        }
    }
}
