import { expect, type Locator, type Page } from '@playwright/test';

/** The top navigation bar. */
export function mainNav(page: Page): Locator {
  return page.getByRole('navigation', { name: 'Main' });
}

/** A fresh, valid username (3..=32 of [a-z0-9_]) so tests never collide. */
export function uniqueUsername(prefix = 'u'): string {
  const rand = Math.random().toString(36).slice(2, 8);
  return `${prefix}_${Date.now().toString(36)}${rand}`.slice(0, 32);
}

/** Opens `path` and waits until the page is hydrated (the wasm bundle has run). */
export async function open(page: Page, path: string): Promise<void> {
  await page.goto(path);
  await page.waitForLoadState('networkidle');
  await expect(page.locator('body[data-hydrated]')).toHaveCount(1);
}

export async function signUp(page: Page, username: string, password: string): Promise<void> {
  await open(page, '/signup');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await expect(mainNav(page).getByRole('link', { name: `@${username}` })).toBeVisible();
}
