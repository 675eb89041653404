/// A `linux.cgroupsPath` in systemd's form, `slice:prefix:name`, as runc and containerd write it
/// (`kubepods-besteffort.slice:cri-containerd:<id>`): the container gets the transient scope unit
/// `prefix-name.scope` in `slice`, and its cgroup is wherever systemd puts that unit.
public struct SystemdCgroupPath: Sendable, Equatable {
    public let slice: String
    public let unit: String

    /// `path` empty means runc's default for the runtime: `system.slice:cocoon:<id>`.
    public init(_ path: String?, containerID: String) throws(SystemdError) {
        let given = path ?? ""
        if given.isEmpty {
            slice = "system.slice"
            unit = "cocoon-\(containerID).scope"
            try Self.validateUnitName(unit, field: "container id")
            return
        }
        let parts = given.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3 else {
            throw SystemdError(.invalidArgument,
                "linux.cgroupsPath '\(given)': with --systemd-cgroup it must be slice:prefix:name (as 'system.slice:cocoon:\(containerID)')")
        }
        let (sliceName, prefix, name) = (parts[0], parts[1], parts[2])
        slice = sliceName.isEmpty ? "system.slice" : sliceName
        try Self.validateSlice(slice, path: given)
        guard !name.isEmpty else {
            throw SystemdError(.invalidArgument, "linux.cgroupsPath '\(given)': the name (third field) is empty")
        }
        guard !name.hasSuffix(".slice") else {
            throw SystemdError(.invalidArgument,
                "linux.cgroupsPath '\(given)': a slice as the container's own unit is not supported; name a scope")
        }
        unit = prefix.isEmpty ? "\(name).scope" : "\(prefix)-\(name).scope"
        try Self.validateUnitName(unit, field: "linux.cgroupsPath '\(given)'")
    }

    /// The unit's cgroup below the hierarchy root: each dash in a slice name is one level of nesting.
    public var cgroupPath: String { Self.expand(slice: slice) + "/" + unit }

    static func expand(slice: String) -> String {
        if slice == "-.slice" { return "" }
        let stem = slice.dropLast(".slice".count)
        var path = ""
        var prefix = ""
        for part in stem.split(separator: "-") {
            prefix += prefix.isEmpty ? String(part) : "-" + part
            path += "/" + prefix + ".slice"
        }
        return path
    }

    static func validateSlice(_ slice: String, path: String) throws(SystemdError) {
        if slice == "-.slice" { return }
        let stem = slice.hasSuffix(".slice") ? String(slice.dropLast(".slice".count)) : ""
        guard !stem.isEmpty, !stem.hasPrefix("-"), !stem.hasSuffix("-"), !stem.contains("--"),
              stem.utf8.allSatisfy({ isUnitNameByte($0) || $0 == UInt8(ascii: "-") }) else {
            throw SystemdError(.invalidArgument,
                "linux.cgroupsPath '\(path)': '\(slice)' is not a slice name (letters, digits, ':_.\\ and single dashes, ending in .slice)")
        }
    }

    static func validateUnitName(_ unit: String, field: String) throws(SystemdError) {
        guard unit.utf8.count <= 255, unit.utf8.allSatisfy({ isUnitNameByte($0) || $0 == UInt8(ascii: "-") }) else {
            throw SystemdError(.invalidArgument,
                "\(field): '\(unit)' is not a valid systemd unit name (at most 255 of letters, digits, ':-_.\\')")
        }
    }

    static func isUnitNameByte(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || ":_.\\".utf8.contains(c)
    }
}
