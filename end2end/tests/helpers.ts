import { expect, type Browser, type Locator, type Page } from '@playwright/test';

/** The top navigation bar. */
export function mainNav(page: Page): Locator {
  return page.getByRole('navigation', { name: 'Main' });
}

/** A fresh, valid username (3..=32 of [a-z0-9_]) so tests never collide. */
export function uniqueUsername(prefix = 'u'): string {
  const rand = Math.random().toString(36).slice(2, 8);
  return `${prefix}_${Date.now().toString(36)}${rand}`.slice(0, 32);
}

const watched = new WeakSet<Page>();
const pageErrors = new WeakMap<Page, string[]>();

/** Records console errors and uncaught exceptions (hydration mismatches show up there). */
function watch(page: Page): string[] {
  if (!watched.has(page)) {
    watched.add(page);
    const errors: string[] = [];
    pageErrors.set(page, errors);
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(e.message));
  }
  return pageErrors.get(page) ?? [];
}

/** Opens `path`, waits until the page is hydrated (the wasm bundle has run) and checks
 * that nothing went wrong in the browser on the way. */
export async function open(page: Page, path: string): Promise<void> {
  const errors = watch(page);
  await page.goto(path);
  await page.waitForLoadState('load');
  try {
    await expect(page.locator('body[data-hydrated]')).toHaveCount(1);
  } catch (e) {
    // A page that never hydrates usually says why in the console: keep it with the failure.
    throw new Error(`${path} did not hydrate; browser errors: ${JSON.stringify(errors)}\n${e}`);
  }
  expect(errors.filter((e) => !/status of 4\d\d/.test(e)), `browser errors on ${path}`).toEqual([]);
}

export async function signUp(page: Page, username: string, password: string): Promise<void> {
  await open(page, '/signup');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await expect(mainNav(page).getByRole('link', { name: `@${username}` })).toBeVisible();
}

/** Signs `username` in on `page` (another browser context plays another device). */
export async function signIn(page: Page, username: string, password: string): Promise<void> {
  await open(page, '/signin');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(mainNav(page).getByRole('link', { name: `@${username}` })).toBeVisible();
}

/** Someone new, signed up in a browser context of their own (another person's device). */
export async function person(
  browser: Browser,
  prefix: string,
  password: string,
): Promise<{ page: Page; name: string }> {
  const page = await (await browser.newContext()).newPage();
  const name = uniqueUsername(prefix);
  await signUp(page, name, password);
  return { page, name };
}
