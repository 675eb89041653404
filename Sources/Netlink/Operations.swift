// Reading and changing links, addresses, routes and neighbours.

extension RouteSocket {
    // MARK: Reading

    public func links() throws(NetlinkError) -> [Link] {
        var header = [UInt8](repeating: 0, count: 16)  // ifinfomsg, AF_UNSPEC
        header[0] = 0
        let messages = try dump(NetlinkRequest(type: Netlink.getLink, flags: 0, header: header), what: "list links")
        return messages.compactMap { m -> Link? in
            let p = m.payload
            guard m.type == Netlink.newLink, p.count >= 16 else { return nil }
            let s = p.startIndex
            let attrs = Attributes(p[(s + 16)...])
            return Link(index: p.native(Int32.self, at: s + 4), name: attrs.string(3) ?? "",
                        kind: attrs.nested(18)?.string(1), hardwareType: p.native(UInt16.self, at: s + 2),
                        mac: attrs.mac(1), mtu: attrs.uint32(4) ?? 0, flags: p.native(UInt32.self, at: s + 8))
        }
    }

    public func link(named name: String) throws(NetlinkError) -> Link? {
        try links().first { $0.name == name }
    }

    public func addresses() throws(NetlinkError) -> [InterfaceAddress] {
        let header = [UInt8](repeating: 0, count: 8)
        let messages = try dump(NetlinkRequest(type: Netlink.getAddr, flags: 0, header: header), what: "list addresses")
        return messages.compactMap { m -> InterfaceAddress? in
            let p = m.payload
            guard m.type == Netlink.newAddr, p.count >= 8 else { return nil }
            let s = p.startIndex
            let attrs = Attributes(p[(s + 8)...])
            // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS otherwise.
            guard let address = attrs.address(2) ?? attrs.address(1),
                  let prefix = IPPrefix(address: address, length: p[s + 1]) else { return nil }
            return InterfaceAddress(index: Int32(bitPattern: p.native(UInt32.self, at: s + 4)), prefix: prefix, scope: p[s + 3])
        }
    }

    public func routes() throws(NetlinkError) -> [Route] {
        let header = [UInt8](repeating: 0, count: 12)
        let messages = try dump(NetlinkRequest(type: Netlink.getRoute, flags: 0, header: header), what: "list routes")
        return messages.compactMap { m -> Route? in
            let p = m.payload
            guard m.type == Netlink.newRoute, p.count >= 12 else { return nil }
            let s = p.startIndex
            guard let family = AddressFamily(rawValue: p[s]) else { return nil }
            let attrs = Attributes(p[(s + 12)...])
            let dstLength = p[s + 1]
            let destination: IPPrefix? = dstLength == 0 ? nil : attrs.address(1).flatMap { IPPrefix(address: $0, length: dstLength) }
            if dstLength != 0 && destination == nil { return nil }
            return Route(family: family, destination: destination, gateway: attrs.address(5),
                         outputIndex: attrs.uint32(4).map { Int32(bitPattern: $0) }, preferredSource: attrs.address(7),
                         scope: p[s + 6], protocolNumber: p[s + 5], table: attrs.uint32(15) ?? UInt32(p[s + 4]),
                         type: p[s + 7], priority: attrs.uint32(6))
        }
    }

    public func neighbours() throws(NetlinkError) -> [Neighbour] {
        let header = [UInt8](repeating: 0, count: 12)
        let messages = try dump(NetlinkRequest(type: Netlink.getNeigh, flags: 0, header: header), what: "list neighbours")
        return messages.compactMap { m -> Neighbour? in
            let p = m.payload
            guard m.type == Netlink.newNeigh, p.count >= 12 else { return nil }
            let s = p.startIndex
            let attrs = Attributes(p[(s + 12)...])
            guard let address = attrs.address(1) else { return nil }
            return Neighbour(index: p.native(Int32.self, at: s + 4), address: address, mac: attrs.mac(2),
                             state: p.native(UInt16.self, at: s + 8))
        }
    }

    // MARK: Changing

    /// Changes what is given: up or down, MTU, name (the link must be down), MAC.
    public func setLink(index: Int32, up: Bool? = nil, mtu: UInt32? = nil, name: String? = nil, mac: MACAddress? = nil) throws(NetlinkError) {
        // ifinfomsg: family, pad, type, index, flags, change (only IFF_UP, and only when asked).
        let header: [UInt8] = [0, 0, 0, 0] + [UInt8].native(index) + [UInt8].native(up == true ? UInt32(1) : 0)
            + [UInt8].native(up == nil ? UInt32(0) : 1)
        var r = NetlinkRequest(type: Netlink.newLink, flags: 0, header: header)
        if let mtu { r.attributes.add(4, uint32: mtu) }
        if let name { r.attributes.add(3, string: name) }
        if let mac { r.attributes.add(1, mac.bytes) }
        try execute(r, what: "set link \(index)")
    }

    public func deleteLink(index: Int32) throws(NetlinkError) {
        let r = NetlinkRequest(type: Netlink.delLink, flags: 0, header: [0, 0, 0, 0] + [UInt8].native(index) + [UInt8](repeating: 0, count: 8))
        try execute(r, what: "delete link \(index)")
    }

    /// Adds an address; `noDAD` skips IPv6 duplicate address detection (the address is usable at once).
    public func addAddress(index: Int32, _ prefix: IPPrefix, noDAD: Bool = true) throws(NetlinkError) {
        let flags: UInt8 = prefix.address.family == .inet6 && noDAD ? 0x02 : 0  // IFA_F_NODAD
        var r = NetlinkRequest(type: Netlink.newAddr, flags: Netlink.create | Netlink.excl,
                               header: [prefix.address.family.rawValue, prefix.length, flags, 0] + [UInt8].native(UInt32(bitPattern: index)))
        r.attributes.add(2, prefix.address.bytes)  // IFA_LOCAL
        r.attributes.add(1, prefix.address.bytes)  // IFA_ADDRESS
        try execute(r, what: "add address \(prefix)")
    }

    public func addRoute(_ route: Route) throws(NetlinkError) {
        let dstLength = route.destination?.length ?? 0
        var r = NetlinkRequest(type: Netlink.newRoute, flags: Netlink.create | Netlink.excl,
                               header: [route.family.rawValue, dstLength, 0, 0, UInt8(Route.mainTable), 3 /* RTPROT_BOOT */,
                                        route.scope, Route.unicast] + [UInt8].native(UInt32(0)))
        if let d = route.destination { r.attributes.add(1, d.address.bytes) }
        if let g = route.gateway { r.attributes.add(5, g.bytes) }
        if let oif = route.outputIndex { r.attributes.add(4, uint32: UInt32(bitPattern: oif)) }
        if let src = route.preferredSource { r.attributes.add(7, src.bytes) }
        if let prio = route.priority { r.attributes.add(6, uint32: prio) }
        try execute(r, what: "add route \(route.destination.map(\.description) ?? "default")\(route.gateway.map { " via \($0)" } ?? "")")
    }

    /// A permanent neighbour entry.
    public func addNeighbour(index: Int32, address: IPAddress, mac: MACAddress) throws(NetlinkError) {
        var header: [UInt8] = [address.family.rawValue, 0, 0, 0]
        header += [UInt8].native(index)
        header += [UInt8].native(Neighbour.permanent) + [0, 0]
        var r = NetlinkRequest(type: Netlink.newNeigh, flags: Netlink.create | Netlink.replace, header: header)
        r.attributes.add(1, address.bytes)
        r.attributes.add(2, mac.bytes)
        try execute(r, what: "add neighbour \(address)")
    }
}
