/// Marshals values in little-endian order. Offsets (and so padding) count from the message start.
struct DBusWriter {
    static let maxArrayBytes = 1 << 26

    var bytes: [UInt8] = []

    mutating func pad(to alignment: Int) {
        while bytes.count % alignment != 0 { bytes.append(0) }
    }

    mutating func put<T: FixedWidthInteger>(_ value: T) {
        pad(to: MemoryLayout<T>.size)
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func putString(_ s: String) throws(DBusError) {
        let utf8 = Array(s.utf8)
        guard !utf8.contains(0) else { throw DBusError(.invalidArgument, "D-Bus strings cannot hold NUL bytes") }
        put(UInt32(utf8.count))
        bytes += utf8
        bytes.append(0)
    }

    mutating func putSignature(_ s: String) throws(DBusError) {
        _ = try DBusSignature.split(s)
        bytes.append(UInt8(s.utf8.count))
        bytes += Array(s.utf8)
        bytes.append(0)
    }

    mutating func write(_ value: DBusValue) throws(DBusError) {
        switch value {
        case .byte(let v): bytes.append(v)
        case .boolean(let v): put(UInt32(v ? 1 : 0))
        case .int16(let v): put(v)
        case .uint16(let v): put(v)
        case .int32(let v): put(v)
        case .uint32(let v): put(v)
        case .int64(let v): put(v)
        case .uint64(let v): put(v)
        case .double(let v): put(v.bitPattern)
        case .string(let s): try putString(s)
        case .objectPath(let s):
            guard DBusMessage.isValidObjectPath(s) else { throw DBusError(.invalidArgument, "'\(s)' is not a D-Bus object path") }
            try putString(s)
        case .signature(let s): try putSignature(s)
        case .array(let element, let items):
            let types = try DBusSignature.split(element)
            guard types.count == 1 else { throw DBusError(.invalidArgument, "array element signature '\(element)' is not one type") }
            put(UInt32(0))
            let lengthAt = bytes.count - 4
            pad(to: DBusAlignment.of(types[0][0]))
            let start = bytes.count
            for item in items {
                guard item.signature == element else {
                    throw DBusError(.invalidArgument, "array of '\(element)' given an element of type '\(item.signature)'")
                }
                try write(item)
            }
            let length = bytes.count - start
            guard length <= Self.maxArrayBytes else { throw DBusError(.invalidArgument, "D-Bus array longer than 64 MiB") }
            withUnsafeBytes(of: UInt32(length).littleEndian) { bytes.replaceSubrange(lengthAt..<lengthAt + 4, with: $0) }
        case .structure(let fields):
            pad(to: 8)
            for f in fields { try write(f) }
        case .dictEntry(let k, let v):
            pad(to: 8)
            try write(k)
            try write(v)
        case .variant(let inner):
            try putSignature(inner.signature)
            try write(inner)
        }
    }
}

/// Unmarshals values by signature, bounds-checked: a short or inconsistent message is an error, never a trap.
struct DBusReader {
    let bytes: [UInt8]
    var offset: Int
    let bigEndian: Bool
    /// Nesting of arrays, structures and variants together (the specification allows 64).
    var depth = 0

    init(_ bytes: [UInt8], offset: Int = 0, bigEndian: Bool) {
        self.bytes = bytes
        self.offset = offset
        self.bigEndian = bigEndian
    }

    mutating func align(_ alignment: Int) throws(DBusError) {
        let next = (offset + alignment - 1) / alignment * alignment
        guard next <= bytes.count else { throw .malformed("truncated") }
        for i in offset..<next where bytes[i] != 0 { throw .malformed("non-zero padding") }
        offset = next
    }

    mutating func take(_ count: Int) throws(DBusError) -> ArraySlice<UInt8> {
        guard count >= 0, offset + count <= bytes.count else { throw .malformed("truncated") }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(DBusError) -> T {
        try align(MemoryLayout<T>.size)
        var value: T = 0
        let raw = try take(MemoryLayout<T>.size)
        withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: raw) }
        return bigEndian ? T(bigEndian: value) : T(littleEndian: value)
    }

    mutating func string() throws(DBusError) -> String {
        let length = Int(try integer(UInt32.self))
        let raw = try take(length)
        guard try take(1).first == 0 else { throw .malformed("string not NUL-terminated") }
        guard !raw.contains(0), let s = String(validating: raw, as: UTF8.self) else { throw .malformed("string is not UTF-8") }
        return s
    }

    mutating func signature() throws(DBusError) -> String {
        let length = Int(try take(1).first!)
        let raw = try take(length)
        guard try take(1).first == 0 else { throw .malformed("signature not NUL-terminated") }
        guard let s = String(validating: raw, as: UTF8.self) else { throw .malformed("signature is not ASCII") }
        _ = try DBusSignature.split(s)
        return s
    }

    /// Reads every value of `signature` (a sequence of complete types).
    mutating func read(signature: String) throws(DBusError) -> [DBusValue] {
        var values: [DBusValue] = []
        for type in try DBusSignature.split(signature) { values.append(try read(type: type[...])) }
        return values
    }

    mutating func read(type: ArraySlice<UInt8>) throws(DBusError) -> DBusValue {
        guard let code = type.first else { throw .malformed("empty type") }
        switch code {
        case UInt8(ascii: "y"): return .byte(try take(1).first!)
        case UInt8(ascii: "b"):
            switch try integer(UInt32.self) {
            case 0: return .boolean(false)
            case 1: return .boolean(true)
            default: throw .malformed("boolean other than 0 or 1")
            }
        case UInt8(ascii: "n"): return .int16(try integer(Int16.self))
        case UInt8(ascii: "q"): return .uint16(try integer(UInt16.self))
        case UInt8(ascii: "i"): return .int32(try integer(Int32.self))
        case UInt8(ascii: "u"): return .uint32(try integer(UInt32.self))
        case UInt8(ascii: "x"): return .int64(try integer(Int64.self))
        case UInt8(ascii: "t"): return .uint64(try integer(UInt64.self))
        case UInt8(ascii: "d"): return .double(Double(bitPattern: try integer(UInt64.self)))
        case UInt8(ascii: "s"): return .string(try string())
        case UInt8(ascii: "o"):
            let path = try string()
            guard DBusMessage.isValidObjectPath(path) else { throw .malformed("invalid object path '\(path)'") }
            return .objectPath(path)
        case UInt8(ascii: "g"): return .signature(try signature())
        case UInt8(ascii: "v"):
            let inner = try signature()
            let types = try DBusSignature.split(inner)
            guard types.count == 1 else { throw .malformed("variant signature '\(inner)' is not one type") }
            return .variant(try nested { (r: inout DBusReader) throws(DBusError) in try r.read(type: types[0][...]) })
        case UInt8(ascii: "a"):
            let element = type.dropFirst()
            let length = Int(try integer(UInt32.self))
            guard length <= DBusWriter.maxArrayBytes else { throw .malformed("array longer than 64 MiB") }
            try align(DBusAlignment.of(element.first ?? 0))
            let end = offset + length
            guard end <= bytes.count else { throw .malformed("truncated array") }
            var items: [DBusValue] = []
            try nested { (r: inout DBusReader) throws(DBusError) in
                while r.offset < end { items.append(try r.read(type: element)) }
            }
            guard offset == end else { throw .malformed("array element crosses the array's end") }
            return .array(element: String(decoding: element, as: UTF8.self), items)
        case UInt8(ascii: "("), UInt8(ascii: "{"):
            try align(8)
            let inner = type.dropFirst().dropLast()
            var fields: [DBusValue] = []
            let all = Array(inner)
            try nested { (r: inout DBusReader) throws(DBusError) in
                var k = 0
                while k < all.count {
                    let end = try DBusSignature.completeType(all, from: k, depth: 0)
                    fields.append(try r.read(type: all[k..<end]))
                    k = end
                }
            }
            if code == UInt8(ascii: "{") {
                guard fields.count == 2 else { throw .malformed("dict entry without one key and one value") }
                return .dictEntry(fields[0], fields[1])
            }
            return .structure(fields)
        default:
            throw .malformed("unknown type code \(code)")
        }
    }

    private mutating func nested<T>(_ body: (inout DBusReader) throws(DBusError) -> T) throws(DBusError) -> T {
        depth += 1
        defer { depth -= 1 }
        guard depth <= 64 else { throw .malformed("values nested deeper than 64") }
        return try body(&self)
    }
}
