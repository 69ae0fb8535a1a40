import { TempWorkspace } from '../../testing/temp-workspace';
import { normalizeOptions } from './executor';

describe('test-boot options: the seed folder', () => {
  const workspace = new TempWorkspace();
  workspace.write('dist/images/demo/20_top.qcow2', 'disk');
  afterAll(() => workspace.remove());
  const options = { imageName: 'demo', chain: 'dist/images/demo/20_top.qcow2', cloudInitDir: 'images/demo/test-boot', ssh: 'true' };
  const terminal = { stdinIsTTY: false, ci: false };

  it('takes a folder holding user-data.yaml as the seed, so --ssh can put its key in', () => {
    workspace.write('images/demo/test-boot/user-data.yaml', '#cloud-config\n');
    expect(normalizeOptions(options, workspace.root, terminal).cloudInitDir).toBe(workspace.path('images/demo/test-boot'));
  });

  it('fails before booting when the folder holds both user-data and user-data.yaml', () => {
    workspace.write('images/demo/test-boot/user-data', '#cloud-config\n');
    expect(() => normalizeOptions(options, workspace.root, terminal)).toThrow(
      `holds both ${workspace.path('images/demo/test-boot/user-data')} and ${workspace.path('images/demo/test-boot/user-data.yaml')}`,
    );
  });
});
