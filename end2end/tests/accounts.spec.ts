import { test, expect } from '@playwright/test';
import { mainNav, open, signIn, signUp, uniqueUsername } from './helpers';

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

test('changing the password signs out the other sessions', async ({ page, browser }) => {
  const username = uniqueUsername('dora');
  await signUp(page, username, PASSWORD);
  // A second device, signed in with the old password.
  const other = await browser.newContext();
  const otherPage = await other.newPage();
  await signIn(otherPage, username, PASSWORD);

  await mainNav(page).getByRole('link', { name: 'Settings' }).click();
  await expect(page.getByRole('heading', { name: 'Change password' })).toBeVisible();
  await page.getByLabel('Current password').fill('not the password');
  await page.getByLabel('New password').fill('a new passphrase');
  await page.getByRole('button', { name: 'Change password' }).click();
  await expect(page.getByRole('alert')).toHaveText('the current password is wrong');

  await page.getByLabel('Current password').fill(PASSWORD);
  await page.getByLabel('New password').fill('a new passphrase');
  await page.getByRole('button', { name: 'Change password' }).click();
  await expect(page.getByRole('status')).toHaveText('Password changed. Your other sessions are signed out.');
  // This device stays signed in; the other one is signed out on its next page.
  await page.reload();
  await expect(mainNav(page).getByRole('link', { name: `@${username}` })).toBeVisible();
  await otherPage.reload();
  await expect(mainNav(otherPage).getByRole('link', { name: 'Sign in' })).toBeVisible();
  // (Its live connection's attempt to come back with the ended session is refused, which
  // the browser logs: a fresh device signs in below.)
  await other.close();

  // Only the new password signs in.
  const third = await browser.newContext();
  const thirdPage = await third.newPage();
  await open(thirdPage, '/signin');
  await thirdPage.getByLabel('Username').fill(username);
  await thirdPage.getByLabel('Password').fill(PASSWORD);
  await thirdPage.getByRole('button', { name: 'Sign in' }).click();
  await expect(thirdPage.getByRole('alert')).toHaveText('wrong username or password');
  await thirdPage.getByLabel('Password').fill('a new passphrase');
  await thirdPage.getByRole('button', { name: 'Sign in' }).click();
  await expect(mainNav(thirdPage).getByRole('link', { name: `@${username}` })).toBeVisible();
  await third.close();
});

test('another session can be signed out from the settings', async ({ page, browser }) => {
  const username = uniqueUsername('erin');
  await signUp(page, username, PASSWORD);
  const other = await browser.newContext();
  const otherPage = await other.newPage();
  await signIn(otherPage, username, PASSWORD);

  await open(page, '/settings');
  const sessions = page.getByRole('list', { name: 'Sessions' });
  await expect(sessions.getByRole('listitem')).toHaveCount(2);
  await expect(sessions.getByText('This device')).toHaveCount(1);
  await sessions.getByRole('button', { name: /^Sign out / }).click();
  await expect(sessions.getByRole('listitem')).toHaveCount(1);

  await otherPage.reload();
  await expect(mainNav(otherPage).getByRole('link', { name: 'Sign in' })).toBeVisible();
  await other.close();
});

test('a display name and bio set in the settings show on the profile', async ({ page }) => {
  const username = uniqueUsername('bio');
  await signUp(page, username, PASSWORD);
  await open(page, '/settings');
  await expect(page.getByLabel('Display name')).toHaveValue(username);
  await page.getByLabel('Display name').fill('Rosa Marsh');
  await page.getByLabel('Bio').fill('Paints boats.\nLives by the harbour.');
  await expect(page.getByText('35 of 300 characters')).toBeVisible();
  await page.getByRole('button', { name: 'Save profile' }).click();
  await expect(page.getByText('Profile saved.')).toBeVisible();

  await open(page, `/u/${username}`);
  await expect(page.getByRole('heading', { name: 'Rosa Marsh' })).toBeVisible();
  await expect(page.getByText('Paints boats.')).toBeVisible();

  // A bio past 300 characters is refused with the reason, and nothing changes.
  await open(page, '/settings');
  await expect(page.getByLabel('Bio')).toHaveValue('Paints boats.\nLives by the harbour.');
  await page.getByLabel('Bio').fill('x'.repeat(301));
  await page.getByRole('button', { name: 'Save profile' }).click();
  await expect(page.getByRole('alert')).toContainText('at most 300 characters');
  await open(page, `/u/${username}`);
  await expect(page.getByText('Paints boats.')).toBeVisible();
});

test('deleting the account signs out, and the name is taken for now', async ({ page }) => {
  const username = uniqueUsername('leave');
  await signUp(page, username, PASSWORD);
  await open(page, '/settings');
  const form = page.getByRole('form', { name: 'Delete account' });
  await form.getByLabel('Password').fill('not my password');
  await form.getByRole('button', { name: 'Delete my account' }).click();
  await expect(form.getByRole('alert')).toContainText('the password is wrong');

  await form.getByLabel('Password').fill(PASSWORD);
  await form.getByRole('button', { name: 'Delete my account' }).click();
  await expect(mainNav(page).getByRole('link', { name: 'Sign in' })).toBeVisible();
  await open(page, `/u/${username}`);
  await expect(page.getByRole('heading', { name: 'No such user' })).toBeVisible();

  // Signing in fails, and the name cannot be registered again yet.
  await open(page, '/signin');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toBeVisible();
  await open(page, '/signup');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await expect(page.getByRole('alert')).toContainText('already taken');
});
