/**
 * A minimal OVF 1.0 descriptor for one disk: what VirtualBox
 * (`VBoxManage import`) and VMware (`ovftool`) need to create a machine
 * from an OVA: the disk file and its capacity, CPUs, memory, a SATA
 * controller with the disk on it, and one NAT-able network adapter.
 */
export interface OvfMachine {
  cpus: number;
  memoryMiB: number;
}

export interface OvfDisk {
  /** Machine name, also the OVF's. */
  name: string;
  vmdkFile: string;
  /** Length of the vmdk file in bytes. */
  vmdkSize: number;
  /** Virtual disk size in bytes. */
  capacity: number;
  machine: OvfMachine;
}

const STREAM_OPTIMIZED = 'http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized';

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (char) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[char]!);
}

export function ovfDescriptor(disk: OvfDisk): string {
  if (!Number.isInteger(disk.machine.cpus) || disk.machine.cpus < 1) throw new Error(`OVF: cpus must be a whole number >= 1, not ${disk.machine.cpus}.`);
  if (!Number.isInteger(disk.machine.memoryMiB) || disk.machine.memoryMiB < 1)
    throw new Error(`OVF: memory must be a whole number of MiB, not ${disk.machine.memoryMiB}.`);
  const name = escapeXml(disk.name);
  const item = (lines: string[]) => ['      <Item>', ...lines.map((line) => `        ${line}`), '      </Item>'].join('\n');
  return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope ovf:version="1.0" xml:lang="en-US"
    xmlns="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:id="file1" ovf:href="${escapeXml(disk.vmdkFile)}" ovf:size="${disk.vmdkSize}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="${disk.capacity}" ovf:capacityAllocationUnits="byte" ovf:format="${STREAM_OPTIMIZED}"/>
  </DiskSection>
  <NetworkSection>
    <Info>The logical networks used by the machine</Info>
    <Network ovf:name="NAT">
      <Description>The network the machine's adapter is attached to</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="${name}">
    <Info>A virtual machine built by vmlb</Info>
    <Name>${name}</Name>
    <OperatingSystemSection ovf:id="96">
      <Info>The guest operating system</Info>
      <Description>Debian_64</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>${name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>virtualbox-2.2 vmx-10</vssd:VirtualSystemType>
      </System>
${item([
  `<rasd:Caption>${disk.machine.cpus} virtual CPU</rasd:Caption>`,
  '<rasd:Description>Number of virtual CPUs</rasd:Description>',
  `<rasd:ElementName>${disk.machine.cpus} virtual CPU</rasd:ElementName>`,
  '<rasd:InstanceID>1</rasd:InstanceID>',
  '<rasd:ResourceType>3</rasd:ResourceType>',
  `<rasd:VirtualQuantity>${disk.machine.cpus}</rasd:VirtualQuantity>`,
])}
${item([
  '<rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits>',
  `<rasd:Caption>${disk.machine.memoryMiB} MB of memory</rasd:Caption>`,
  '<rasd:Description>Memory Size</rasd:Description>',
  `<rasd:ElementName>${disk.machine.memoryMiB} MB of memory</rasd:ElementName>`,
  '<rasd:InstanceID>2</rasd:InstanceID>',
  '<rasd:ResourceType>4</rasd:ResourceType>',
  `<rasd:VirtualQuantity>${disk.machine.memoryMiB}</rasd:VirtualQuantity>`,
])}
${item([
  '<rasd:Address>0</rasd:Address>',
  '<rasd:Caption>sataController0</rasd:Caption>',
  '<rasd:Description>SATA Controller</rasd:Description>',
  '<rasd:ElementName>sataController0</rasd:ElementName>',
  '<rasd:InstanceID>3</rasd:InstanceID>',
  '<rasd:ResourceSubType>AHCI</rasd:ResourceSubType>',
  '<rasd:ResourceType>20</rasd:ResourceType>',
])}
${item([
  '<rasd:AddressOnParent>0</rasd:AddressOnParent>',
  '<rasd:Caption>disk1</rasd:Caption>',
  '<rasd:Description>Disk Image</rasd:Description>',
  '<rasd:ElementName>disk1</rasd:ElementName>',
  '<rasd:HostResource>/disk/vmdisk1</rasd:HostResource>',
  '<rasd:InstanceID>4</rasd:InstanceID>',
  '<rasd:Parent>3</rasd:Parent>',
  '<rasd:ResourceType>17</rasd:ResourceType>',
])}
${item([
  '<rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>',
  '<rasd:Caption>Ethernet adapter on NAT</rasd:Caption>',
  '<rasd:Connection>NAT</rasd:Connection>',
  '<rasd:ElementName>Ethernet adapter on NAT</rasd:ElementName>',
  '<rasd:InstanceID>5</rasd:InstanceID>',
  '<rasd:ResourceSubType>E1000</rasd:ResourceSubType>',
  '<rasd:ResourceType>10</rasd:ResourceType>',
])}
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`;
}
