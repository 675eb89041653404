/// A network interface as rtnetlink reports it.
public struct Link: Sendable, Equatable {
    public var index: Int32
    public var name: String
    /// IFLA_INFO_KIND: "veth", "tun", "bridge", ...; nil for physical devices and loopback.
    public var kind: String?
    /// ARPHRD_* (1 is Ethernet, 772 loopback).
    public var hardwareType: UInt16
    public var mac: MACAddress?
    public var mtu: UInt32
    public var flags: UInt32

    public var isUp: Bool { flags & 0x1 != 0 }
    public var isLoopback: Bool { flags & 0x8 != 0 }
    public var isEthernet: Bool { hardwareType == 1 }
}

/// An address configured on an interface.
public struct InterfaceAddress: Sendable, Equatable {
    public var index: Int32
    public var prefix: IPPrefix
    /// RT_SCOPE_*: 0 universe, 253 link, 254 host.
    public var scope: UInt8
}

/// A route of the main table.
public struct Route: Sendable, Equatable {
    public var family: AddressFamily
    /// nil: the default route.
    public var destination: IPPrefix?
    public var gateway: IPAddress?
    public var outputIndex: Int32?
    public var preferredSource: IPAddress?
    public var scope: UInt8
    /// RTPROT_*: 2 means the kernel made it from an address.
    public var protocolNumber: UInt8
    public var table: UInt32
    /// RTN_*: 1 unicast.
    public var type: UInt8
    public var priority: UInt32?

    public init(family: AddressFamily, destination: IPPrefix?, gateway: IPAddress?, outputIndex: Int32?,
                preferredSource: IPAddress? = nil, scope: UInt8, protocolNumber: UInt8 = 3, table: UInt32 = 254,
                type: UInt8 = 1, priority: UInt32? = nil) {
        self.family = family
        self.destination = destination
        self.gateway = gateway
        self.outputIndex = outputIndex
        self.preferredSource = preferredSource
        self.scope = scope
        self.protocolNumber = protocolNumber
        self.table = table
        self.type = type
        self.priority = priority
    }

    public static let scopeUniverse: UInt8 = 0
    public static let scopeLink: UInt8 = 253
    public static let protocolKernel: UInt8 = 2
    public static let mainTable: UInt32 = 254
    public static let unicast: UInt8 = 1
}

/// An entry of the neighbour (ARP / NDP) table.
public struct Neighbour: Sendable, Equatable {
    public var index: Int32
    public var address: IPAddress
    public var mac: MACAddress?
    /// NUD_*: 0x80 permanent.
    public var state: UInt16

    public static let permanent: UInt16 = 0x80
    public var isPermanent: Bool { state & Self.permanent != 0 }
}
