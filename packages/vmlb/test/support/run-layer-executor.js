// Runs the compiled layer executor the way Nx's task process does, without
// Nx around it: `node run-layer-executor.js '<options json>' <project>` in
// the workspace root. The fault tests stop layer builds dozens of times;
// going through Nx would add its start-up (a second or more) to each.
const path = require('node:path');

const executor = require(path.resolve(__dirname, '../../dist/executors/layer/executor.js')).default;
const [optionsJson, projectName] = process.argv.slice(2);
const context = { root: process.cwd(), cwd: process.cwd(), isVerbose: false, projectName, targetName: 'build' };
executor(JSON.parse(optionsJson), context).then(
  (result) => {
    if (!result.success && !process.exitCode) process.exitCode = 1;
  },
  (error) => {
    console.error(error);
    process.exitCode = 1;
  },
);
