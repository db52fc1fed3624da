// node drive.mjs PLAYERS_DIR PAGE_URL CASES_JSON: opens the page in Debian's chromium (headless,
// through playwright-core), runs window.check(case) for each case on a fresh page, and prints
// {"support": {mime: bool}, "cases": [result, ...]} as JSON. A case's result also lists the
// byte ranges the page asked for and the page's uncaught errors.
import {createRequire} from 'node:module';
import path from 'node:path';

const [playersDir, pageUrl, casesJson] = process.argv.slice(2);
const {chromium} = createRequire(path.join(path.resolve(playersDir), 'index.js'))('playwright-core');
const {mimes, cases} = JSON.parse(casesJson);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required', '--mute-audio'],
});
try {
  const page = await browser.newPage();
  let ranges = [];
  let pageErrors = [];
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  page.on('request', async (request) => {
    const range = (await request.allHeaders()).range;
    if (range) ranges.push({url: new URL(request.url()).pathname, range});
  });
  await page.goto(pageUrl);
  const support = await page.evaluate((list) => Object.fromEntries(list.map((m) => [m, MediaSource.isTypeSupported(m)])), mimes);
  const results = [];
  for (const c of cases) {
    await page.goto(pageUrl);
    ranges = [];
    pageErrors = [];
    const result = await page.evaluate((arg) => window.check(arg), c);
    results.push({...result, ranges, pageErrors});
  }
  console.log(JSON.stringify({support, cases: results}));
} finally {
  await browser.close();
}
