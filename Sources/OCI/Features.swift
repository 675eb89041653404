// The runtime-spec features document (`runc features`): what this runtime implements.

public struct Features: Codable, Sendable, Equatable {
    public var ociVersionMin: String
    public var ociVersionMax: String
    public var hooks: [String]
    public var mountOptions: [String]
    public var linux: LinuxFeatures
    public var annotations: [String: String]

    public init(ociVersionMin: String, ociVersionMax: String, hooks: [String], mountOptions: [String],
                linux: LinuxFeatures, annotations: [String: String]) {
        self.ociVersionMin = ociVersionMin
        self.ociVersionMax = ociVersionMax
        self.hooks = hooks
        self.mountOptions = mountOptions
        self.linux = linux
        self.annotations = annotations
    }
}

public struct LinuxFeatures: Codable, Sendable, Equatable {
    public struct Cgroup: Codable, Sendable, Equatable {
        public var v1: Bool
        public var v2: Bool
        public var systemd: Bool
        public var systemdUser: Bool
        public init(v1: Bool, v2: Bool, systemd: Bool, systemdUser: Bool) {
            self.v1 = v1
            self.v2 = v2
            self.systemd = systemd
            self.systemdUser = systemdUser
        }
    }
    public struct SeccompFeatures: Codable, Sendable, Equatable {
        public var enabled: Bool
        public var actions: [String]
        public var operators: [String]
        public var archs: [String]
        public init(enabled: Bool, actions: [String], operators: [String], archs: [String]) {
            self.enabled = enabled
            self.actions = actions
            self.operators = operators
            self.archs = archs
        }
    }
    public struct Enabled: Codable, Sendable, Equatable {
        public var enabled: Bool
        public init(enabled: Bool) { self.enabled = enabled }
    }
    public var namespaces: [String]
    public var capabilities: [String]
    public var cgroup: Cgroup
    public var seccomp: SeccompFeatures
    public var apparmor: Enabled
    public var selinux: Enabled

    public init(namespaces: [String], capabilities: [String], cgroup: Cgroup, seccomp: SeccompFeatures,
                apparmor: Enabled, selinux: Enabled) {
        self.namespaces = namespaces
        self.capabilities = capabilities
        self.cgroup = cgroup
        self.seccomp = seccomp
        self.apparmor = apparmor
        self.selinux = selinux
    }
}
