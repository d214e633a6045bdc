import { foundationSuite } from './helpers/foundation-suite.js';

foundationSuite('cold boot', []);
