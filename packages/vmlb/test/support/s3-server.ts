// Moved to src/testing (unit specs import only from there); kept here for the specs that still name this path.
export * from '../../src/testing/s3-server';
