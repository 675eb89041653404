#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address in network byte order.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public var family: AddressFamily { bytes.count == 4 ? .inet : .inet6 }

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Dotted quad or RFC 4291 text; nil for anything else.
    public init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }

    public var description: String {
        var out = [CChar](repeating: 0, count: 64)
        let af = family == .inet ? AF_INET : AF_INET6
        _ = bytes.withUnsafeBytes { inet_ntop(af, $0.baseAddress, &out, socklen_t(out.count)) }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// fe80::/10: the guest's kernel makes its own from the MAC.
    public var isIPv6LinkLocal: Bool { family == .inet6 && bytes[0] == 0xfe && (bytes[1] & 0xc0) == 0x80 }
}

public enum AddressFamily: UInt8, Sendable, Codable {
    case inet = 2
    case inet6 = 10

    public var bitCount: Int { self == .inet ? 32 : 128 }
}

/// An address with a prefix length: 198.18.0.2/24, 2001:2::2/64.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let length: UInt8

    public init?(address: IPAddress, length: UInt8) {
        guard Int(length) <= address.family.bitCount else { return nil }
        self.address = address
        self.length = length
    }

    /// "address/length"; a bare address means the full length.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(String(parts[0])) else { return nil }
        if parts.count == 2 {
            guard let n = UInt8(parts[1]) else { return nil }
            self.init(address: address, length: n)
        } else {
            self.init(address: address, length: UInt8(address.family.bitCount))
        }
    }

    public var description: String { "\(address)/\(length)" }
}

/// A 6-byte Ethernet address.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 6 else { return nil }
        self.bytes = bytes
    }

    /// "aa:bb:cc:dd:ee:ff" (case-insensitive).
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard p.count == 2, let b = UInt8(p, radix: 16) else { return nil }
            out.append(b)
        }
        bytes = out
    }

    public var description: String {
        bytes.map { b in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined(separator: ":")
    }

    /// Unicast and not all zeros: usable as a NIC's address.
    public var isUsableUnicast: Bool { bytes[0] & 1 == 0 && bytes.contains { $0 != 0 } }
}
