import AgentAPI

/// The QEMU machine model.
public enum MachineType: String, Sendable, CaseIterable, Codable {
    /// No firmware, PVH boot of the uncompressed vmlinux, virtio-mmio: the fast path.
    case microvm
    /// PCI Express machine with virtio-pci: the compatible path.
    case q35
    /// i440FX with virtio-pci.
    case pc

    public var usesPCI: Bool { self != .microvm }
}

/// Where the guest's root (the agent as /init) comes from.
public enum GuestRootKind: String, Sendable, CaseIterable, Codable {
    /// An ext4 image on a read-only virtio-blk disk: the guest pages in what it runs, and the host's
    /// page cache holds one copy of the file for every VM.
    case image
    /// An initramfs: copied whole into every VM's memory and unpacked there at boot.
    case initrd
}

/// What the user asked for.
public enum AccelerationMode: String, Sendable, CaseIterable, Codable {
    case auto, kvm, tcg
}

/// What QEMU is actually given.
public enum Accelerator: String, Sendable, Equatable {
    case kvm, tcg
}

/// How host and agent talk.
public enum ChannelTransport: Sendable, Equatable {
    /// AF_VSOCK with this guest CID, through vhost-vsock-pci/-device.
    case vsock(cid: UInt32)
    /// A virtserialport named `AgentChannel.portName`, backed by a unix socket the host listens on.
    case serial(socketPath: String)
}

/// How the host shares directories (container root filesystems) with the guest.
public enum SharedFilesystemKind: String, Sendable, CaseIterable, Codable {
    /// vhost-user-fs served by virtiofsd: the fast path.
    case virtioFS = "virtio-fs"
    /// QEMU's own 9p server: no extra process, slower.
    case ninep = "9p"
}

/// One shared directory: the host path, and how QEMU exports it under `tag`.
public struct SharedDirectory: Sendable, Equatable {
    public var kind: SharedFilesystemKind
    public var hostPath: String
    public var tag: String
    /// virtio-fs: virtiofsd's vhost-user socket.
    public var socketPath: String

    public init(kind: SharedFilesystemKind, hostPath: String, tag: String, socketPath: String) {
        self.kind = kind
        self.hostPath = hostPath
        self.tag = tag
        self.socketPath = socketPath
    }
}

/// A virtio-net device backed by a tap the controller opened (in the pod's network namespace).
public struct NetworkDevice: Sendable, Equatable {
    public var id: String
    /// "aa:bb:cc:dd:ee:ff": the pod interface's, so the guest's NIC answers to the same address.
    public var mac: String
    public var mtu: UInt32
    /// The tap descriptor in the controller; QEMU receives it as descriptor 3 + the device's position.
    public var tapDescriptor: Int32

    public init(id: String, mac: String, mtu: UInt32, tapDescriptor: Int32) {
        self.id = id
        self.mac = mac
        self.mtu = mtu
        self.tapDescriptor = tapDescriptor
    }
}

/// Everything needed to start one VM.
public struct VMSpec: Sendable {
    public var qemuPath: String
    public var kernelPath: String
    public var initrdPath: String
    /// When set, the guest boots from this ext4 image (read-only virtio-blk) and `initrdPath` is not used.
    public var rootImagePath: String?
    public var machine: MachineType
    public var accelerator: Accelerator
    public var memoryMiB: Int
    public var vcpus: Int
    /// Appended after cocoon's own kernel parameters.
    public var extraKernelParameters: [String]
    public var channel: ChannelTransport
    public var qmpSocketPath: String
    public var consoleLogPath: String
    /// Guest log level handed to the agent on the kernel command line.
    public var agentLogLevel: String
    /// Print kernel messages on the console (otherwise `quiet`).
    public var verboseKernel: Bool
    /// The directory shared with the guest, if any.
    public var shared: SharedDirectory?
    /// NICs, in order; none unless the sandbox has a network namespace to carry.
    public var networkDevices: [NetworkDevice] = []
    /// vhost-net for the NICs (the host has /dev/vhost-net and runs KVM).
    public var vhostNet = false

    public init(qemuPath: String, kernelPath: String, initrdPath: String, machine: MachineType,
                accelerator: Accelerator, memoryMiB: Int, vcpus: Int, extraKernelParameters: [String] = [],
                channel: ChannelTransport, qmpSocketPath: String, consoleLogPath: String,
                agentLogLevel: String = "info", verboseKernel: Bool = false) {
        self.qemuPath = qemuPath
        self.kernelPath = kernelPath
        self.initrdPath = initrdPath
        self.machine = machine
        self.accelerator = accelerator
        self.memoryMiB = memoryMiB
        self.vcpus = vcpus
        self.extraKernelParameters = extraKernelParameters
        self.channel = channel
        self.qmpSocketPath = qmpSocketPath
        self.consoleLogPath = consoleLogPath
        self.agentLogLevel = agentLogLevel
        self.verboseKernel = verboseKernel
    }
}
