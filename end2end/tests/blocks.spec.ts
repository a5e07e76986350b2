import { test, expect } from '@playwright/test';
import { open, person } from './helpers';

const PASSWORD = 'correct horse battery staple';

test.describe.configure({ timeout: 60_000 });

test('a block from a profile keeps two people apart until the settings lift it', async ({ browser }) => {
  const a = await person(browser, 'blk_a', PASSWORD);
  const b = await person(browser, 'blk_b', PASSWORD);

  // B starts a group with A.
  await open(b.page, '/chat');
  await b.page.getByLabel('Group name').fill('Book club');
  await b.page.getByLabel('Members (usernames, separated by commas)').fill(a.name);
  await b.page.getByRole('button', { name: 'Create group' }).click();
  await expect(b.page.getByRole('heading', { name: 'Book club' })).toBeVisible();
  const group = new URL(b.page.url()).pathname;

  // A blocks B from B's profile, after saying yes to what it does.
  await open(a.page, `/u/${b.name}`);
  await a.page.getByRole('button', { name: `Block @${b.name}` }).click();
  await expect(a.page.getByRole('group', { name: 'Confirm block' })).toContainText('hidden from you');
  await a.page.getByRole('button', { name: 'Yes, block' }).click();
  await expect(a.page.getByRole('button', { name: `Unblock @${b.name}` })).toBeVisible();
  await expect(a.page.getByRole('button', { name: `Follow @${b.name}` })).toHaveCount(0);
  await expect(a.page.getByText("you cannot see this person's posts")).toBeVisible();

  // B's messages in the group reach A hidden, live.
  await open(a.page, group);
  await open(b.page, group);
  const composer = b.page.getByRole('textbox', { name: 'Message' });
  await composer.fill('can you read this');
  await composer.press('Enter');
  await expect(b.page.getByRole('list', { name: 'Messages' }).getByText('can you read this')).toBeVisible();
  const aMessages = a.page.getByRole('list', { name: 'Messages' });
  await expect(aMessages.getByText('Hidden: you blocked this person')).toBeVisible();
  await expect(aMessages.getByText('can you read this')).toHaveCount(0);

  // B can neither see A's posts nor follow A.
  await open(b.page, `/u/${a.name}`);
  await expect(b.page.getByText("you cannot see this person's posts")).toBeVisible();
  await b.page.getByRole('button', { name: `Follow @${a.name}` }).click();
  await expect(b.page.getByRole('alert')).toContainText('you cannot follow this person');

  // A lifts the block from the settings, and reads B's message.
  await open(a.page, '/settings');
  const blocked = a.page.getByRole('list', { name: 'Blocked people' });
  await expect(blocked.getByRole('link', { name: b.name })).toBeVisible();
  await blocked.getByRole('button', { name: `Unblock @${b.name}` }).click();
  await expect(a.page.getByText('You have not blocked anyone.')).toBeVisible();
  await open(a.page, group);
  await expect(a.page.getByRole('list', { name: 'Messages' }).getByText('can you read this')).toBeVisible();
});
