import Ajv from 'ajv';

/**
 * What an SPDX 2.3 JSON document must hold, written from the SPDX 2.3
 * specification (chapters 6 "Document creation information", 7 "Package
 * information" and 11 "Relationships between SPDX elements") because no
 * npm package ships the SPDX project's JSON schema: the mandatory fields
 * with their value forms, the enumerations vmlb uses, and no field the
 * specification does not name. `spdxProblems` adds the checks a JSON schema
 * cannot express: unique ids, and relationships between ids that exist.
 */
const SPDX_ID = '^SPDXRef-[A-Za-z0-9.-]+$';
const NONE_OR_NOASSERTION_OR_TEXT = { type: 'string', minLength: 1 };

const schema = {
  type: 'object',
  required: ['spdxVersion', 'dataLicense', 'SPDXID', 'name', 'documentNamespace', 'creationInfo'],
  additionalProperties: false,
  properties: {
    spdxVersion: { const: 'SPDX-2.3' },
    dataLicense: { const: 'CC0-1.0' },
    SPDXID: { const: 'SPDXRef-DOCUMENT' },
    name: { type: 'string', minLength: 1 },
    // 6.5: a unique absolute URI without a "#" part.
    documentNamespace: { type: 'string', pattern: '^[a-z][a-z0-9+.-]*://[^#\\s]+$' },
    comment: { type: 'string' },
    documentDescribes: { type: 'array', items: { type: 'string', pattern: SPDX_ID } },
    creationInfo: {
      type: 'object',
      required: ['created', 'creators'],
      additionalProperties: false,
      properties: {
        // 6.9: YYYY-MM-DDThh:mm:ssZ, UTC.
        created: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}Z$' },
        // 6.8: one or more of "Person: ...", "Organization: ...", "Tool: ...".
        creators: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^(Person|Organization|Tool): .+' } },
        comment: { type: 'string' },
        licenseListVersion: { type: 'string' },
      },
    },
    packages: {
      type: 'array',
      items: {
        type: 'object',
        // 7.1, 7.2, 7.7 are mandatory; 7.8 filesAnalyzed false spares 7.9 packageVerificationCode.
        required: ['name', 'SPDXID', 'downloadLocation', 'filesAnalyzed'],
        additionalProperties: false,
        properties: {
          name: { type: 'string', minLength: 1 },
          SPDXID: { type: 'string', pattern: SPDX_ID },
          versionInfo: { type: 'string', minLength: 1 },
          downloadLocation: NONE_OR_NOASSERTION_OR_TEXT,
          filesAnalyzed: { const: false },
          // 7.24
          primaryPackagePurpose: {
            enum: [
              'APPLICATION',
              'FRAMEWORK',
              'LIBRARY',
              'CONTAINER',
              'OPERATING-SYSTEM',
              'DEVICE',
              'FIRMWARE',
              'SOURCE',
              'ARCHIVE',
              'FILE',
              'INSTALL',
              'OTHER',
            ],
          },
          sourceInfo: { type: 'string' },
          comment: { type: 'string' },
          licenseConcluded: NONE_OR_NOASSERTION_OR_TEXT,
          licenseDeclared: NONE_OR_NOASSERTION_OR_TEXT,
          copyrightText: NONE_OR_NOASSERTION_OR_TEXT,
          // 7.21: category, type and locator, all mandatory in an external reference.
          externalRefs: {
            type: 'array',
            items: {
              type: 'object',
              required: ['referenceCategory', 'referenceType', 'referenceLocator'],
              additionalProperties: false,
              properties: {
                referenceCategory: { enum: ['SECURITY', 'PACKAGE-MANAGER', 'PERSISTENT-ID', 'OTHER'] },
                referenceType: { type: 'string', minLength: 1 },
                // A purl locator (Annex F): pkg:type/namespace/name@version?qualifiers, no spaces.
                referenceLocator: { type: 'string', pattern: '^pkg:[a-z]+/[^\\s]+$' },
              },
            },
          },
        },
      },
    },
    relationships: {
      type: 'array',
      items: {
        type: 'object',
        required: ['spdxElementId', 'relationshipType', 'relatedSpdxElement'],
        additionalProperties: false,
        properties: {
          spdxElementId: { type: 'string', pattern: SPDX_ID },
          relationshipType: { enum: ['DESCRIBES', 'DESCRIBED_BY', 'CONTAINS', 'CONTAINED_BY', 'DEPENDS_ON', 'DEPENDENCY_OF', 'OTHER'] },
          relatedSpdxElement: { type: 'string', pattern: SPDX_ID },
        },
      },
    },
  },
};

const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);

/** Every way `document` falls short of SPDX 2.3 as above; empty when it does not. */
export function spdxProblems(document: unknown): string[] {
  const problems = validate(document) ? [] : (validate.errors ?? []).map((error) => `${error.instancePath || '/'} ${error.message}`);
  const doc = document as { packages?: Array<{ SPDXID: string }>; relationships?: Array<Record<string, string>>; documentDescribes?: string[] };
  const ids = (doc.packages ?? []).map((pkg) => pkg.SPDXID);
  const known = new Set(['SPDXRef-DOCUMENT', ...ids]);
  if (known.size !== ids.length + 1) problems.push('SPDX ids are not unique');
  for (const edge of doc.relationships ?? []) {
    for (const id of [edge.spdxElementId, edge.relatedSpdxElement]) if (!known.has(id)) problems.push(`relationship names ${id}, which no element has`);
  }
  // 11.1: the document DESCRIBES at least one element (documentDescribes, or a relationship from the document).
  const describes = (doc.relationships ?? []).some((edge) => edge.spdxElementId === 'SPDXRef-DOCUMENT' && edge.relationshipType === 'DESCRIBES');
  if (!describes && !doc.documentDescribes?.length) problems.push('the document describes no element');
  return problems;
}
