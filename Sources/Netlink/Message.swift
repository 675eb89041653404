// rtnetlink wire format (linux/netlink.h, linux/rtnetlink.h): a 16-byte header, a fixed family
// struct, then type-length-value attributes, each padded to 4 bytes. Integers are in host order.

/// Builds attribute lists, nested ones included.
struct AttributeWriter {
    var bytes: [UInt8] = []

    mutating func add(_ type: UInt16, _ payload: [UInt8]) {
        bytes.appendNative(UInt16(4 + payload.count))
        bytes.appendNative(type)
        bytes += payload
        bytes.padTo4()
    }

    mutating func add(_ type: UInt16, uint32 value: UInt32) { add(type, [UInt8].native(value)) }
    mutating func add(_ type: UInt16, uint16 value: UInt16) { add(type, [UInt8].native(value)) }
    mutating func add(_ type: UInt16, uint8 value: UInt8) { add(type, [value]) }
    /// NUL-terminated, as the kernel expects names and kinds.
    mutating func add(_ type: UInt16, string: String) { add(type, Array(string.utf8) + [0]) }

    mutating func nested(_ type: UInt16, _ body: (inout AttributeWriter) -> Void) {
        var inner = AttributeWriter()
        body(&inner)
        add(type | Netlink.nestedFlag, inner.bytes)
    }
}

/// One request: message type, flags, the family struct and attributes.
struct NetlinkRequest {
    var type: UInt16
    var flags: UInt16
    var header: [UInt8]
    var attributes = AttributeWriter()

    init(type: UInt16, flags: UInt16, header: [UInt8]) {
        self.type = type
        self.flags = flags
        self.header = header
    }

    func encoded(sequence: UInt32) -> [UInt8] {
        var body = header
        body.padTo4()
        body += attributes.bytes
        var out: [UInt8] = []
        out.appendNative(UInt32(16 + body.count))
        out.appendNative(type)
        out.appendNative(flags)
        out.appendNative(sequence)
        out.appendNative(UInt32(0))
        return out + body
    }
}

/// One message the kernel sent.
struct NetlinkMessage {
    var type: UInt16
    var flags: UInt16
    var sequence: UInt32
    var payload: ArraySlice<UInt8>

    /// Splits a datagram; refuses lengths that do not fit it rather than reading past it.
    static func parse(_ bytes: [UInt8]) throws(NetlinkError) -> [NetlinkMessage] {
        var out: [NetlinkMessage] = []
        var offset = 0
        while offset + 16 <= bytes.count {
            let length = Int(bytes.native(UInt32.self, at: offset))
            guard length >= 16, offset + length <= bytes.count else {
                throw NetlinkError(.dataLoss, "netlink: malformed message (length \(length) at offset \(offset) of \(bytes.count))")
            }
            out.append(NetlinkMessage(type: bytes.native(UInt16.self, at: offset + 4), flags: bytes.native(UInt16.self, at: offset + 6),
                                      sequence: bytes.native(UInt32.self, at: offset + 8),
                                      payload: bytes[(offset + 16)..<(offset + length)]))
            offset += (length + 3) & ~3
        }
        return out
    }
}

/// Attributes of one message or nest, by type (the last one wins for repeated types).
struct Attributes {
    private(set) var values: [UInt16: ArraySlice<UInt8>] = [:]

    init(_ bytes: ArraySlice<UInt8>) {
        var offset = bytes.startIndex
        while offset + 4 <= bytes.endIndex {
            let length = Int(bytes.native(UInt16.self, at: offset))
            let type = bytes.native(UInt16.self, at: offset + 2) & Netlink.typeMask
            guard length >= 4, offset + length <= bytes.endIndex else { break }
            values[type] = bytes[(offset + 4)..<(offset + length)]
            offset += (length + 3) & ~3
        }
    }

    subscript(type: UInt16) -> ArraySlice<UInt8>? { values[type] }

    func uint32(_ type: UInt16) -> UInt32? {
        guard let v = values[type], v.count >= 4 else { return nil }
        return v.native(UInt32.self, at: v.startIndex)
    }

    func uint8(_ type: UInt16) -> UInt8? { values[type]?.first }

    func string(_ type: UInt16) -> String? {
        guard let v = values[type] else { return nil }
        return String(decoding: v.prefix { $0 != 0 }, as: UTF8.self)
    }

    func address(_ type: UInt16) -> IPAddress? { values[type].flatMap { IPAddress(bytes: Array($0)) } }
    func mac(_ type: UInt16) -> MACAddress? { values[type].flatMap { MACAddress(bytes: Array($0)) } }
    func nested(_ type: UInt16) -> Attributes? { values[type].map(Attributes.init) }
}

extension Array where Element == UInt8 {
    mutating func appendNative<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value) { self += $0 }
    }

    mutating func padTo4() {
        while count % 4 != 0 { append(0) }
    }

    static func native<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        Swift.withUnsafeBytes(of: value) { Array($0) }
    }
}

extension Collection where Element == UInt8, Index == Int {
    /// A host-order integer at `offset`; the caller has checked the bounds.
    func native<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value = T.zero
        withUnsafeMutableBytes(of: &value) { raw in
            for i in 0..<MemoryLayout<T>.size { raw[i] = self[offset + i] }
        }
        return value
    }
}

/// Constants from linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/pkt_sched.h.
enum Netlink {
    static let nestedFlag: UInt16 = 0x8000
    static let typeMask: UInt16 = 0x3fff

    // nlmsg types
    static let error: UInt16 = 2
    static let done: UInt16 = 3
    static let newLink: UInt16 = 16, delLink: UInt16 = 17, getLink: UInt16 = 18
    static let newAddr: UInt16 = 20, getAddr: UInt16 = 22
    static let newRoute: UInt16 = 24, getRoute: UInt16 = 26
    static let newNeigh: UInt16 = 28, getNeigh: UInt16 = 30
    static let newQdisc: UInt16 = 36, delQdisc: UInt16 = 37
    static let newFilter: UInt16 = 44

    // nlmsg flags
    static let request: UInt16 = 0x1, multi: UInt16 = 0x2, ack: UInt16 = 0x4
    static let dump: UInt16 = 0x300
    static let replace: UInt16 = 0x100, excl: UInt16 = 0x200, create: UInt16 = 0x400
    /// In an error message: the request was not echoed (NETLINK_CAP_ACK), TLVs follow (NETLINK_EXT_ACK).
    static let capped: UInt16 = 0x100, ackTLVs: UInt16 = 0x200
}
