import { test, expect } from '@playwright/test';
import { mainNav, open, signUp, uniqueUsername } from './helpers';

const PASSWORD = 'correct horse battery staple';

test('sign up, stay signed in across a reload, sign out and back in', async ({ page }) => {
  const username = uniqueUsername('alice');
  await signUp(page, username, PASSWORD);
  await expect(mainNav(page).getByText('Signed in as')).toBeVisible();

  await page.reload();
  await expect(mainNav(page).getByRole('link', { name: `@${username}` })).toBeVisible();

  await mainNav(page).getByRole('button', { name: 'Sign out' }).click();
  await expect(mainNav(page).getByRole('link', { name: 'Sign in' })).toBeVisible();
  await expect(mainNav(page).getByRole('link', { name: `@${username}` })).toHaveCount(0);

  await open(page, '/signin');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(mainNav(page).getByRole('link', { name: `@${username}` })).toBeVisible();

  await mainNav(page).getByRole('link', { name: `@${username}` }).click();
  await expect(page.getByRole('heading', { name: username })).toBeVisible();
  await expect(page.getByText('Followers')).toBeVisible();
});

test('a wrong password shows an inline error', async ({ page }) => {
  const username = uniqueUsername('bob');
  await signUp(page, username, PASSWORD);
  await mainNav(page).getByRole('button', { name: 'Sign out' }).click();
  await expect(mainNav(page).getByRole('link', { name: 'Sign in' })).toBeVisible();

  await open(page, '/signin');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toHaveText('wrong username or password');
  await expect(page).toHaveURL(/\/signin$/);
});

test('sign-up validation errors appear next to the form', async ({ page }) => {
  await open(page, '/signup');
  await page.getByLabel('Username').fill('Not Valid');
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await expect(page.getByRole('alert')).toContainText('username: may contain only a-z, 0-9 and _');

  const taken = uniqueUsername('carol');
  await signUp(page, taken, PASSWORD);
  await mainNav(page).getByRole('button', { name: 'Sign out' }).click();
  await expect(mainNav(page).getByRole('link', { name: 'Sign in' })).toBeVisible();
  await open(page, '/signup');
  await page.getByLabel('Username').fill(taken);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await expect(page.getByRole('alert')).toContainText('already taken');
});
