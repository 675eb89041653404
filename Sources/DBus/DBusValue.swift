/// One D-Bus value with its type. Only what cocoon exchanges with systemd and the bus daemon is needed,
/// but every basic and container type decodes, so an unexpected reply is reported, not misread.
public indirect enum DBusValue: Sendable, Equatable {
    case byte(UInt8)
    case boolean(Bool)
    case int16(Int16)
    case uint16(UInt16)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case double(Double)
    case string(String)
    case objectPath(String)
    case signature(String)
    /// `element` is the signature of one element, so an empty array still has a type.
    case array(element: String, [DBusValue])
    case structure([DBusValue])
    case dictEntry(DBusValue, DBusValue)
    case variant(DBusValue)

    public var signature: String {
        switch self {
        case .byte: "y"
        case .boolean: "b"
        case .int16: "n"
        case .uint16: "q"
        case .int32: "i"
        case .uint32: "u"
        case .int64: "x"
        case .uint64: "t"
        case .double: "d"
        case .string: "s"
        case .objectPath: "o"
        case .signature: "g"
        case .array(let element, _): "a" + element
        case .structure(let fields): "(" + fields.map(\.signature).joined() + ")"
        case .dictEntry(let k, let v): "{" + k.signature + v.signature + "}"
        case .variant: "v"
        }
    }

    public var string: String? {
        switch self {
        case .string(let s), .objectPath(let s), .signature(let s): s
        case .variant(let v): v.string
        default: nil
        }
    }

    public var uint32: UInt32? {
        switch self {
        case .uint32(let v): v
        case .variant(let v): v.uint32
        default: nil
        }
    }

    /// A property list, `a(sv)`, as systemd's StartTransientUnit and SetUnitProperties take it.
    public static func properties(_ list: [(String, DBusValue)]) -> DBusValue {
        .array(element: "(sv)", list.map { .structure([.string($0.0), .variant($0.1)]) })
    }
}

/// Alignment of each type code on the wire (the D-Bus specification's table).
enum DBusAlignment {
    static func of(_ code: UInt8) -> Int {
        switch code {
        case UInt8(ascii: "y"), UInt8(ascii: "g"), UInt8(ascii: "v"): 1
        case UInt8(ascii: "n"), UInt8(ascii: "q"): 2
        case UInt8(ascii: "x"), UInt8(ascii: "t"), UInt8(ascii: "d"), UInt8(ascii: "("), UInt8(ascii: "{"): 8
        default: 4
        }
    }
}

/// Splits signatures into single complete types.
enum DBusSignature {
    static let maxLength = 255
    static let maxDepth = 32

    /// The complete types of `signature`, in order; throws on an invalid signature.
    static func split(_ signature: String) throws(DBusError) -> [[UInt8]] {
        let bytes = Array(signature.utf8)
        guard bytes.count <= maxLength else { throw .malformed("signature longer than \(maxLength)") }
        var types: [[UInt8]] = []
        var i = 0
        while i < bytes.count {
            let end = try completeType(bytes, from: i, depth: 0)
            types.append(Array(bytes[i..<end]))
            i = end
        }
        return types
    }

    /// The index just past the complete type starting at `i`.
    static func completeType(_ s: [UInt8], from i: Int, depth: Int) throws(DBusError) -> Int {
        guard depth <= maxDepth else { throw .malformed("signature nested deeper than \(maxDepth)") }
        guard i < s.count else { throw .malformed("signature ends inside a type") }
        switch s[i] {
        case UInt8(ascii: "y"), UInt8(ascii: "b"), UInt8(ascii: "n"), UInt8(ascii: "q"), UInt8(ascii: "i"),
             UInt8(ascii: "u"), UInt8(ascii: "x"), UInt8(ascii: "t"), UInt8(ascii: "d"), UInt8(ascii: "s"),
             UInt8(ascii: "o"), UInt8(ascii: "g"), UInt8(ascii: "v"):
            return i + 1
        case UInt8(ascii: "a"):
            return try completeType(s, from: i + 1, depth: depth + 1)
        case UInt8(ascii: "("):
            var j = i + 1
            guard j < s.count, s[j] != UInt8(ascii: ")") else { throw .malformed("empty structure in signature") }
            while j < s.count && s[j] != UInt8(ascii: ")") { j = try completeType(s, from: j, depth: depth + 1) }
            guard j < s.count else { throw .malformed("unclosed structure in signature") }
            return j + 1
        case UInt8(ascii: "{"):
            // Only inside an array, with a basic key and one value.
            guard i > 0, s[i - 1] == UInt8(ascii: "a") else { throw .malformed("dict entry outside an array") }
            let key = i + 1
            guard key < s.count, "ybnqiuxtdsog".utf8.contains(s[key]) else { throw .malformed("dict entry key is not a basic type") }
            let afterValue = try completeType(s, from: key + 1, depth: depth + 1)
            guard afterValue < s.count, s[afterValue] == UInt8(ascii: "}") else { throw .malformed("dict entry must hold one key and one value") }
            return afterValue + 1
        default:
            throw .malformed("unknown type code '\(Character(Unicode.Scalar(s[i])))' in signature")
        }
    }
}
